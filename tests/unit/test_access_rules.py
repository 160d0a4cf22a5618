"""Tenancy rules without a cluster: who reads for a policy, the flags, and which DriftReports are believed."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tests.support.drifts import drift

from kubedrift.cluster.access import CLUSTER_SCOPED, OUTSIDE_NAMESPACE, ReadAccess, Tenancy
from kubedrift.model import PolicyRef, ScanResult
from kubedrift.policy import PolicyError, parse_policy
from kubedrift.publish.metrics import DriftMetrics
from kubedrift.publish.ownership import owned_reports
from kubedrift.publish.reports import ReportLedger
from kubedrift.verdicts import judge

TENANCY = Tenancy(frozenset({"platform"}))


def test_admin_namespace_reads_everything_as_the_operator() -> None:
    access = TENANCY.access_for("platform")
    assert access == ReadAccess("platform")
    assert access.refusal("victim") is None and access.refusal("") is None


def test_other_namespaces_read_only_their_own_namespace() -> None:
    access = TENANCY.access_for("team-a")
    assert access.user is None and access.confined
    assert access.refusal("team-a") is None
    assert access.refusal("victim") == OUTSIDE_NAMESPACE
    assert OUTSIDE_NAMESPACE == "outside the policy's namespace; set spec.serviceAccountName"
    assert access.refusal("") == CLUSTER_SCOPED


def test_service_account_name_impersonates_even_in_an_admin_namespace() -> None:
    for namespace in ("team-a", "platform"):
        access = TENANCY.access_for(namespace, "drift-reader")
        assert access.user == f"system:serviceaccount:{namespace}:drift-reader"
        assert not access.confined and access.refusal("victim") is None  # RBAC decides
        assert access.forbidden() == f"forbidden for system:serviceaccount:{namespace}:drift-reader"


def test_default_service_account_locks_down_policies_outside_admin_namespaces() -> None:
    locked = Tenancy(frozenset({"platform"}), "kubedrift-reader")
    assert locked.access_for("team-a").user == "system:serviceaccount:team-a:kubedrift-reader"
    assert locked.access_for("team-a", "own").user == "system:serviceaccount:team-a:own"
    assert locked.access_for("platform").user is None


@pytest.mark.parametrize(("admin", "account", "expected"), [
    ("kubedrift", None, Tenancy(frozenset({"kubedrift"}))),
    (" ops, platform ,", "", Tenancy(frozenset({"ops", "platform"}))),
    ("", "reader", Tenancy(frozenset(), "reader")),
])
def test_flags_parse(admin: str, account: str | None, expected: Tenancy) -> None:
    assert Tenancy.parse(admin, account) == expected


@pytest.mark.parametrize(("admin", "account", "flag"), [
    ("Team_A", None, "--admin-namespaces"),
    ("ok", "a:b", "--default-service-account"),
])
def test_bad_flag_values_name_the_flag(admin: str, account: str | None, flag: str) -> None:
    with pytest.raises(ValueError, match=flag):
        Tenancy.parse(admin, account)


def _policy(spec: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "app", "namespace": "team-a"},
            "spec": {"source": {"repoURL": "https://git.example/r.git"}, **spec}}


def test_policy_service_account_name_is_parsed_and_checked() -> None:
    assert parse_policy(_policy({"serviceAccountName": "drift-reader"})).service_account_name == "drift-reader"
    assert parse_policy(_policy({})).service_account_name is None
    for bad in ("kube-system:default", "x\nImpersonate-Group: system:masters", 7):
        with pytest.raises(PolicyError, match=r"^spec\.serviceAccountName: "):
            parse_policy(_policy({"serviceAccountName": bad}))


UID = "0b7c-real-uid"
POLICIES = [{"metadata": {"namespace": "team-c", "name": "app", "uid": UID}}]


def _report(namespace: str, policy: str, first_seen: str, owner_uid: str | None, name: str = "r") -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": namespace, "name": name}
    if owner_uid is not None:
        meta["ownerReferences"] = [{"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftPolicy", "name": "app",
                                    "uid": owner_uid, "controller": True}]
    resource = {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "team-c", "name": "web"}
    return {"metadata": meta, "spec": {"policy": policy, "resourceId": "Deployment:team-c:web", "resource": resource,
                                       "severity": "high", "firstSeen": first_seen}, "status": {"state": "Active"}}


def test_only_reports_owned_by_the_policy_in_its_namespace_are_believed() -> None:
    genuine = _report("team-c", "app", "2026-01-05T00:00:00Z", UID)
    forged = [
        _report("mallory", "team-c/app", "2020-01-01T00:00:00Z", None),  # another namespace, names the policy
        _report("mallory", "app", "2020-01-01T00:00:00Z", UID),  # copies the uid, but lives elsewhere
        _report("team-c", "app", "2019-01-01T00:00:00Z", "forged-uid"),  # right place, wrong owner
        _report("team-c", "app", "2019-01-01T00:00:00Z", None),  # no owner at all
    ]
    assert owned_reports([*forged, genuine], POLICIES) == [genuine]

    # Each scan takes the drift active before it (and its firstSeen) only from the policy's own reports.
    policy = PolicyRef("team-c", "app", UID)
    forged_here = [r for r in forged if r["metadata"]["namespace"] == "team-c"]
    ledger = ReportLedger.of(policy, [{**r, "metadata": {**r["metadata"], "name": f"r{i}"}}
                                      for i, r in enumerate([*forged_here, genuine])])
    assert list(ledger.active()) == ["Deployment:team-c:web"]
    later = datetime(2026, 3, 1, tzinfo=UTC)
    result = ScanResult(resources=1, drifts=[drift("Deployment", "team-c", "web")], compared={"Deployment:team-c:web"})
    outcome = judge(policy, finished=later, result=result, declared=["Deployment:team-c:web"], unread={},
                    previous=ledger.active())
    metrics = DriftMetrics()
    metrics.observe(outcome, duration=1.0)
    exported = [s for f in text_string_to_metric_families(metrics.exposition().decode()) for s in f.samples
                if s.name == "kubedrift_drift_first_seen_timestamp_seconds"]
    assert [(s.labels["namespace"], s.labels["policy"], s.value) for s in exported] == [
        ("team-c", "app", datetime(2026, 1, 5, tzinfo=UTC).timestamp())]
