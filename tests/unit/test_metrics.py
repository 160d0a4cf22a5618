"""Metrics scraped and parsed (prometheus_client.parser) after scans with drift and after resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from tests.support.drifts import drift
from tests.support.outcomes import Scans

from kubedrift.model import Severity
from kubedrift.publish.metrics import DriftMetrics

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def samples(metrics: DriftMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(metrics: DriftMetrics, metric: str, **labels: str) -> float | None:
    for got, v in samples(metrics).get(metric, []):
        if all(got.get(k) == want for k, want in labels.items()):
            return v
    return None


def test_drift_then_resolution() -> None:
    m, scans = DriftMetrics(), Scans()
    web = drift("Deployment", "shop", "web", severity=Severity.HIGH)
    cfg = drift("ConfigMap", "shop", "cfg", severity=Severity.LOW)
    m.observe(scans.scan(web, cfg, at=T0, interval_seconds=300), duration=1.5)

    assert value(m, "kubedrift_policy_state", policy="shop", namespace="ops") == 1
    assert value(m, "kubedrift_drifted_resources", policy="shop", severity="high") == 1
    assert value(m, "kubedrift_drifted_resources", policy="shop", severity="critical") == 0
    assert value(m, "kubedrift_last_successful_scan_timestamp_seconds", policy="shop") == T0.timestamp()
    assert value(m, "kubedrift_policy_scan_interval_seconds", policy="shop") == 300
    first = samples(m)["kubedrift_drift_first_seen_timestamp_seconds"]
    assert sorted((s["kind"], s["resource_namespace"], s["name"], s["severity"]) for s, _ in first) == [
        ("ConfigMap", "shop", "cfg", "low"), ("Deployment", "shop", "web", "high")]
    assert all(v == T0.timestamp() for _, v in first)
    assert value(m, "kubedrift_drifts_detected_total", policy="shop", namespace="ops") == 2
    assert value(m, "kubedrift_scan_duration_seconds_count", policy="shop") == 1
    assert value(m, "kubedrift_build_info") == 1

    # Later: web still drifted (first seen unchanged), cfg fixed.
    later = T0 + timedelta(minutes=5)
    m.observe(scans.scan(web, at=later), duration=0.5)
    first = samples(m)["kubedrift_drift_first_seen_timestamp_seconds"]
    assert [(s["name"], v) for s, v in first] == [("web", T0.timestamp())]
    assert value(m, "kubedrift_drifts_resolved_total", policy="shop") == 1

    m.observe(scans.scan(at=later + timedelta(minutes=5)), duration=0.5)
    assert "kubedrift_drift_first_seen_timestamp_seconds" not in samples(m)
    assert value(m, "kubedrift_policy_state", policy="shop", namespace="ops") == 0
    assert value(m, "kubedrift_drifts_resolved_total", policy="shop") == 2


def test_severity_change_moves_the_series_and_keeps_first_seen() -> None:
    m, scans = DriftMetrics(), Scans()
    m.observe(scans.scan(drift("Deployment", "shop", "web", severity=Severity.MEDIUM), at=T0), duration=1)
    m.observe(scans.scan(drift("Deployment", "shop", "web", severity=Severity.CRITICAL), at=T0 + timedelta(hours=1)),
              duration=1)
    first = samples(m)["kubedrift_drift_first_seen_timestamp_seconds"]
    assert [(s["severity"], v) for s, v in first] == [("critical", T0.timestamp())]
    assert value(m, "kubedrift_drifts_detected_total", policy="shop") == 1


def test_failed_scan_sets_error_state_and_counts_reasons_without_touching_drift() -> None:
    m, scans = DriftMetrics(), Scans()
    m.observe(scans.scan(drift("Deployment", "shop", "web"), at=T0), duration=1)
    m.observe(scans.stall("GitError", at=T0 + timedelta(minutes=5)), duration=2)
    m.observe(scans.stall("some new reason with sha 1234abcd", at=T0 + timedelta(minutes=10)), duration=2)
    assert value(m, "kubedrift_policy_state", policy="shop") == 2
    assert len(samples(m)["kubedrift_drift_first_seen_timestamp_seconds"]) == 1
    assert value(m, "kubedrift_drifted_resources", policy="shop", severity="high") == 1
    assert value(m, "kubedrift_scan_errors_total", reason="GitError", policy="shop") == 1
    assert value(m, "kubedrift_scan_errors_total", reason="Other") == 1
    assert value(m, "kubedrift_git_fetch_errors_total", policy="shop") == 1
    reasons = {s["reason"] for s, _ in samples(m)["kubedrift_scan_errors_total"]}
    assert "some new reason with sha 1234abcd" not in reasons


def test_partial_scan_is_error_state_and_keeps_what_was_not_compared() -> None:
    m, scans = DriftMetrics(), Scans()
    web = drift("Deployment", "shop", "web")
    cfg = drift("ConfigMap", "shop", "cfg", severity=Severity.LOW)
    m.observe(scans.scan(web, cfg, at=T0), duration=1)
    # ConfigMaps cannot be listed (403): cfg is not compared; web is fixed and resolves.
    m.observe(scans.scan(at=T0 + timedelta(minutes=5), unread={cfg.id: "forbidden"}), duration=1)
    assert value(m, "kubedrift_policy_state", policy="shop") == 2
    first = samples(m)["kubedrift_drift_first_seen_timestamp_seconds"]
    assert [(s["name"], v) for s, v in first] == [("cfg", T0.timestamp())]
    assert value(m, "kubedrift_drifted_resources", policy="shop", severity="low") == 1
    assert value(m, "kubedrift_drifts_resolved_total", policy="shop") == 1
    assert value(m, "kubedrift_scan_errors_total", reason="PartialRead", policy="shop") == 1
    assert value(m, "kubedrift_api_read_errors_total", policy="shop") == 1
    # Readable again and unchanged: nothing resolves, nothing is detected anew.
    m.observe(scans.scan(cfg, at=T0 + timedelta(minutes=10)), duration=1)
    assert value(m, "kubedrift_policy_state", policy="shop") == 1
    assert value(m, "kubedrift_drifts_detected_total", policy="shop") == 2
    assert value(m, "kubedrift_drift_first_seen_timestamp_seconds", name="cfg") == T0.timestamp()


def test_release_drops_drift_series_and_a_later_outcome_rebuilds_them() -> None:
    m, scans = DriftMetrics(), Scans()
    m.observe(scans.scan(drift("Deployment", "shop", "web"), at=T0), duration=1)
    m.release_policy("ops", "shop")
    exposed = samples(m)
    for name in ("kubedrift_drift_first_seen_timestamp_seconds", "kubedrift_drifted_resources",
                 "kubedrift_policy_state", "kubedrift_last_successful_scan_timestamp_seconds"):
        assert all(labels.get("policy") != "shop" for labels, _ in exposed.get(name, [])), name
    m.observe(scans.scan(drift("Deployment", "shop", "web"), at=T0 + timedelta(hours=1)), duration=1)
    assert value(m, "kubedrift_drift_first_seen_timestamp_seconds", name="web") == T0.timestamp()
    assert value(m, "kubedrift_drifts_detected_total", policy="shop") == 1


def test_policy_deletion_drops_every_series_of_it() -> None:
    m, other = DriftMetrics(), Scans("other", "p")
    m.observe(Scans().scan(drift("Deployment", "shop", "web"), at=T0, interval_seconds=60), duration=1)
    m.observe(other.scan(at=T0), duration=1)
    m.forget_policy("ops", "shop")
    exposed = samples(m)
    assert all(labels.get("policy") != "shop" for series in exposed.values() for labels, _ in series)
    assert value(m, "kubedrift_policy_state", policy="p", namespace="other") == 0


def test_registries_are_independent() -> None:
    a, b = DriftMetrics(), DriftMetrics()
    a.observe(Scans().scan(drift("Deployment", "shop", "web"), at=T0), duration=1)
    assert value(b, "kubedrift_drifts_detected_total") is None


def test_store_gauges_exist_only_with_a_store_and_follow_it() -> None:
    m = DriftMetrics()
    assert "kubedrift_store_up" not in samples(m)  # no MongoDB configured: nothing to alert on
    state = {"pending": 3, "degraded": True}
    m.watch_store(lambda: state["pending"], lambda: bool(state["degraded"]))
    assert value(m, "kubedrift_store_up") == 0 and value(m, "kubedrift_store_pending_writes") == 3
    state.update(pending=0, degraded=False)
    assert value(m, "kubedrift_store_up") == 1 and value(m, "kubedrift_store_pending_writes") == 0


def test_first_seen_counts_from_the_earliest_attributed_change() -> None:
    # A change managedFields date to January is not new because the first scan runs in March.
    m = DriftMetrics()
    edited = drift("Deployment", "shop", "web")
    edited.since = "2026-01-03T12:00:00Z"
    m.observe(Scans().scan(edited, drift("ConfigMap", "shop", "cfg"), at=T0), duration=1.0)
    first = {s["name"]: v for s, v in samples(m)["kubedrift_drift_first_seen_timestamp_seconds"]}
    assert first == {"web": datetime(2026, 1, 3, 12, 0, 0, tzinfo=UTC).timestamp(), "cfg": T0.timestamp()}
