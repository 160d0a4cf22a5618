"""Metrics scraped and parsed (prometheus_client.parser) after scans with drift and after resolution."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from tests.support.drifts import drift, scan

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
    m = DriftMetrics()
    web = drift("Deployment", "shop", "web", severity=Severity.HIGH)
    cfg = drift("ConfigMap", "shop", "cfg", severity=Severity.LOW)
    m.observe_scan("ops", "shop", scan(web, cfg), duration=1.5, finished=T0, interval_seconds=300)

    assert value(m, "kubedrift_policy_state", policy="shop", namespace="ops") == 1
    assert value(m, "kubedrift_drifted_resources", policy="shop", severity="high") == 1
    assert value(m, "kubedrift_drifted_resources", policy="shop", severity="critical") == 0
    assert value(m, "kubedrift_last_successful_scan_timestamp_seconds", policy="shop") == T0.timestamp()
    assert value(m, "kubedrift_policy_scan_interval_seconds", policy="shop") == 300
    first = samples(m)["kubedrift_drift_first_seen_timestamp_seconds"]
    assert sorted((s["kind"], s["resource_namespace"], s["name"], s["severity"]) for s, _ in first) == [
        ("ConfigMap", "shop", "cfg", "low"), ("Deployment", "shop", "web", "high")]
    assert all(v == T0.timestamp() for _, v in first)
    assert value(m, "kubedrift_drifts_detected_total") == 2
    assert value(m, "kubedrift_scan_duration_seconds_count") == 1

    # Later: web still drifted (first seen unchanged), cfg fixed.
    later = T0 + timedelta(minutes=5)
    m.observe_scan("ops", "shop", scan(web), duration=0.5, finished=later)
    first = samples(m)["kubedrift_drift_first_seen_timestamp_seconds"]
    assert [(s["name"], v) for s, v in first] == [("web", T0.timestamp())]
    assert value(m, "kubedrift_drifts_resolved_total") == 1

    m.observe_scan("ops", "shop", scan(), duration=0.5, finished=later + timedelta(minutes=5))
    assert "kubedrift_drift_first_seen_timestamp_seconds" not in samples(m)
    assert value(m, "kubedrift_policy_state", policy="shop", namespace="ops") == 0
    assert value(m, "kubedrift_drifts_resolved_total") == 2


def test_severity_change_moves_the_series_and_keeps_first_seen() -> None:
    m = DriftMetrics()
    m.observe_scan("ops", "shop", scan(drift("Deployment", "shop", "web", severity=Severity.MEDIUM)),
                   duration=1, finished=T0)
    m.observe_scan("ops", "shop", scan(drift("Deployment", "shop", "web", severity=Severity.CRITICAL)),
                   duration=1, finished=T0 + timedelta(hours=1))
    first = samples(m)["kubedrift_drift_first_seen_timestamp_seconds"]
    assert [(s["severity"], v) for s, v in first] == [("critical", T0.timestamp())]
    assert value(m, "kubedrift_drifts_detected_total") == 1


def test_failed_scan_sets_error_state_and_counts_reasons_without_touching_drift() -> None:
    m = DriftMetrics()
    m.observe_scan("ops", "shop", scan(drift("Deployment", "shop", "web")), duration=1, finished=T0)
    m.observe_scan("ops", "shop", None, duration=2, finished=T0 + timedelta(minutes=5), error_reason="GitError")
    m.observe_scan("ops", "shop", None, duration=2, finished=T0 + timedelta(minutes=10),
                   error_reason="some new reason with sha 1234abcd")
    m.observe_scan("ops", "shop", scan(drift("Deployment", "shop", "web")), duration=1,
                   finished=T0 + timedelta(minutes=15), read_errors=2)
    assert value(m, "kubedrift_scan_errors_total", reason="GitError") == 1
    assert value(m, "kubedrift_scan_errors_total", reason="Other") == 1
    assert value(m, "kubedrift_scan_errors_total", reason="PartialRead") == 2
    assert value(m, "kubedrift_git_fetch_errors_total", policy="shop") == 1
    assert value(m, "kubedrift_api_read_errors_total", policy="shop") == 2
    reasons = {s["reason"] for s, _ in samples(m)["kubedrift_scan_errors_total"]}
    assert "some new reason with sha 1234abcd" not in reasons
    assert len(samples(m)["kubedrift_drift_first_seen_timestamp_seconds"]) == 1
    m.observe_scan("ops", "shop", None, duration=1, finished=T0 + timedelta(minutes=20), error_reason="GitError")
    assert value(m, "kubedrift_policy_state", policy="shop") == 2


def test_seeded_first_seen_and_policy_deletion() -> None:
    m = DriftMetrics()
    seeded = T0 - timedelta(days=4)
    m.seed_first_seen("ops", "shop", {"Deployment:shop:web": seeded})
    m.observe_scan("ops", "shop", scan(drift("Deployment", "shop", "web")), duration=1, finished=T0,
                   interval_seconds=60)
    assert value(m, "kubedrift_drift_first_seen_timestamp_seconds", name="web") == seeded.timestamp()
    m.observe_scan("other", "p", scan(), duration=1, finished=T0)
    m.forget_policy("ops", "shop")
    exposed = samples(m)
    assert all(labels.get("policy") != "shop" for series in exposed.values() for labels, _ in series)
    assert value(m, "kubedrift_policy_state", policy="p", namespace="other") == 0


def test_registries_are_independent() -> None:
    a, b = DriftMetrics(), DriftMetrics()
    a.observe_scan("ops", "shop", scan(drift("Deployment", "shop", "web")), duration=1, finished=T0)
    assert value(b, "kubedrift_drifts_detected_total") == 0


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
    m.observe_scan("ops", "shop", scan(edited, drift("ConfigMap", "shop", "cfg")), duration=1.0, finished=T0)
    first = {s["name"]: v for s, v in samples(m)["kubedrift_drift_first_seen_timestamp_seconds"]}
    assert first == {"web": datetime(2026, 1, 3, 12, 0, 0, tzinfo=UTC).timestamp(), "cfg": T0.timestamp()}
