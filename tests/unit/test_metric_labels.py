"""Hostile names from Git never become metric label values, and no policy floods Prometheus with series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from tests.support.drifts import drift
from tests.support.outcomes import Scans

from kubedrift.model import ResourceDrift, ResourceKey, ResourceRef
from kubedrift.publish.metric_labels import MAX_SERIES_PER_POLICY
from kubedrift.publish.metrics import DriftMetrics

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
FIRST_SEEN = "kubedrift_drift_first_seen_timestamp_seconds"


def series(metrics: DriftMetrics, name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(s.labels), s.value) for f in text_string_to_metric_families(metrics.exposition().decode())
            for s in f.samples if s.name == name]


def omitted(metrics: DriftMetrics, policy: str, reason: str) -> float | None:
    found = [v for labels, v in series(metrics, "kubedrift_drift_series_omitted")
             if labels["policy"] == policy and labels["reason"] == reason]
    return found[0] if found else None


def rbac(kind: str, name: str) -> ResourceDrift:
    d = drift(kind, "", name)
    d.key = ResourceKey("rbac.authorization.k8s.io", kind, "", name)
    d.resource = ResourceRef("rbac.authorization.k8s.io/v1", kind, "", name)
    return d


def test_names_that_kubernetes_would_refuse_never_become_label_values() -> None:
    hostile = [
        drift("Deployment", "shop", "Web_App"),
        drift("Deployment", "shop", "web\nkubedrift_policy_state 0"),
        drift("Deployment", "shop", "x" * 254),
        drift("Deployment", "shop", 'a"b'),
        drift("Deployment", "SHOP", "web"),
        drift("Deployment", "n" * 64, "web"),
        drift("Deploy-ment", "shop", "web"),
        drift("Dëployment", "shop", "web"),
        drift("ConfigMap", "shop", "system:not-rbac"),
        drift("Deployment", "shop", "trailing-newline\n"),  # `$` would let these through; full matches only
        drift("Deployment", "newline-ns\n", "web"),
    ]
    fine = [drift("Deployment", "shop", "web"), drift("ConfigMap", "shop", "a." + "b" * 251),
            drift("Namespace", "", "shop"), rbac("ClusterRole", "system:aggregate-to-view")]
    m = DriftMetrics()
    m.observe(Scans("ops", "app").scan(*hostile, *fine, at=T0), duration=1)

    exported = sorted((labels["kind"], labels["resource_namespace"], labels["name"])
                      for labels, _ in series(m, FIRST_SEEN))
    assert exported == sorted((d.resource.kind, d.resource.namespace, d.resource.name) for d in fine)
    text = m.exposition().decode()
    for d in hostile:
        ref = d.resource
        assert all(part not in text for part in (ref.kind, ref.namespace, ref.name)
                   if part not in ("Deployment", "ConfigMap", "shop", "web"))
    assert omitted(m, "app", "invalid_name") == len(hostile) and omitted(m, "app", "limit") == 0
    # Every drift still counts where it matters for alerts.
    assert sum(v for _, v in series(m, "kubedrift_drifted_resources")) == len(hostile) + len(fine)


def test_series_per_policy_are_capped_and_places_go_to_drift_seen_first() -> None:
    m, app = DriftMetrics(series_per_policy=5), Scans("ops", "app")
    drifts = [drift("Deployment", "shop", f"web-{i}") for i in range(8)]
    m.observe(app.scan(*drifts, at=T0), duration=1)
    assert len(series(m, FIRST_SEEN)) == 5 and omitted(m, "app", "limit") == 3
    names = {labels["name"] for labels, _ in series(m, FIRST_SEEN)}

    later = T0 + timedelta(minutes=5)
    m.observe(app.scan(*drifts, drift("Deployment", "shop", "aaa-new"), at=later), duration=1)
    assert {labels["name"] for labels, _ in series(m, FIRST_SEEN)} == names  # places are kept
    assert omitted(m, "app", "limit") == 4

    # One exported drift resolves: a waiting one takes the place with its true first-seen time.
    gone = sorted(names)[0]
    rest = [d for d in drifts if d.resource.name != gone]
    m.observe(app.scan(*rest, at=later + timedelta(minutes=5)), duration=1)
    now_exported = {labels["name"]: v for labels, v in series(m, FIRST_SEEN)}
    assert len(now_exported) == 5 and gone not in now_exported
    assert set(now_exported.values()) == {T0.timestamp()}
    assert omitted(m, "app", "limit") == 2

    # Another policy has its own places.
    m.observe(Scans("ops", "other").scan(drift("Deployment", "shop", "web-0"), at=T0), duration=1)
    assert any(labels["policy"] == "other" for labels, _ in series(m, FIRST_SEEN))
    m.forget_policy("ops", "app")
    assert omitted(m, "app", "limit") is None
    assert all(labels["policy"] == "other" for labels, _ in series(m, FIRST_SEEN))


def test_the_default_cap() -> None:
    m = DriftMetrics()
    many = [drift("ConfigMap", "shop", f"cm-{i}") for i in range(MAX_SERIES_PER_POLICY + 100)]
    m.observe(Scans("ops", "app").scan(*many, at=T0), duration=1)
    assert len(series(m, FIRST_SEEN)) == MAX_SERIES_PER_POLICY
    assert omitted(m, "app", "limit") == 100
