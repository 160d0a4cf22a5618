"""verdicts.judge: exactly one verdict per resource in scope, and the lifecycle decided once."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from tests.support.drifts import drift

from kubedrift.model import (
    ActiveDrift,
    Clean,
    Drifted,
    LoadError,
    NotCompared,
    PolicyRef,
    PolicyState,
    ResourceDrift,
    ScanResult,
    Severity,
    Stall,
    Undeclared,
)
from kubedrift.verdicts import judge, stalled

T0 = datetime(2026, 4, 1, 12, 0, 0, 654321, tzinfo=UTC)
POLICY = PolicyRef("ops", "shop", "uid")
WEB = drift("Deployment", "shop", "web")
API = drift("Service", "shop", "api", severity=Severity.MEDIUM)
CFG = drift("ConfigMap", "shop", "cfg", severity=Severity.LOW)


def active(d: ResourceDrift, first_seen: datetime) -> ActiveDrift:
    return ActiveDrift(d.resource, d.severity, first_seen)


def test_each_resource_gets_one_verdict_and_transitions_follow_from_them() -> None:
    before = {WEB.id: active(WEB, T0 - timedelta(days=2)), API.id: active(API, T0 - timedelta(days=1)),
              CFG.id: active(CFG, T0 - timedelta(hours=1)), "Secret:shop:gone": active(CFG, T0)}
    result = ScanResult(resources=4, drifts=[WEB], compared={WEB.id, API.id, "Pod:shop:new", "Job:shop:bad"},
                        failed={"Job:shop:bad": "Job:shop:bad: cannot compare: KeyError"})
    outcome = judge(POLICY, finished=T0, result=result,
                    declared=[WEB.id, API.id, CFG.id, "Pod:shop:new", "Job:shop:bad"],
                    unread={CFG.id: "ConfigMap in namespace shop: forbidden"}, previous=before,
                    errors=[LoadError("ConfigMap in namespace shop", "403")], read_errors=1)
    assert outcome.verdicts == {
        WEB.id: Drifted(WEB), API.id: Clean(), CFG.id: NotCompared("ConfigMap in namespace shop: forbidden"),
        "Pod:shop:new": Clean(), "Job:shop:bad": NotCompared("Job:shop:bad: cannot compare: KeyError"),
        "Secret:shop:gone": Undeclared(),
    }
    assert outcome.detected == () and outcome.resolved == (API.id,) and outcome.untracked == ("Secret:shop:gone",)
    # Still drifted: firstSeen kept; not compared: kept exactly as it was.
    assert outcome.active == {WEB.id: before[WEB.id], CFG.id: before[CFG.id]}
    assert outcome.state is PolicyState.ERROR and outcome.by_severity()["low"] == 1


def test_new_drift_starts_at_its_earliest_known_change_in_whole_seconds() -> None:
    edited = replace(WEB, since="2026-03-30T08:00:00Z")  # the earliest changedAt, as the diff sets it
    outcome = judge(POLICY, finished=T0, result=ScanResult(1, [edited], compared={WEB.id}, failed={}),
                    declared=[WEB.id], unread={}, previous={})
    assert outcome.detected == (WEB.id,)
    assert outcome.active[WEB.id].first_seen == datetime(2026, 3, 30, 8, tzinfo=UTC)
    plain = judge(POLICY, finished=T0, result=ScanResult(1, [API], compared={API.id}), declared=[API.id],
                  unread={}, previous={})
    assert plain.active[API.id].first_seen == T0.replace(microsecond=0)
    assert plain.state is PolicyState.DRIFTED


def test_incomplete_manifests_never_untrack() -> None:
    before = {WEB.id: active(WEB, T0 - timedelta(days=2))}
    outcome = judge(POLICY, finished=T0, result=ScanResult(0), declared=[], unread={}, previous=before,
                    incomplete="1 manifest file(s) could not be read", errors=[LoadError("a.yaml", "bad")])
    assert outcome.verdicts == {WEB.id: NotCompared("1 manifest file(s) could not be read")}
    assert outcome.untracked == () and outcome.active == before and outcome.state is PolicyState.ERROR
    complete = judge(POLICY, finished=T0, result=ScanResult(0), declared=[], unread={}, previous=before)
    assert complete.verdicts == {WEB.id: Undeclared()} and complete.untracked == (WEB.id,)
    assert complete.state is PolicyState.CLEAN


def test_a_stalled_scan_keeps_everything_and_is_an_error() -> None:
    before = {WEB.id: active(WEB, T0)}
    outcome = stalled(POLICY, Stall("GitError", "unreachable"), finished=T0, previous=before)
    assert outcome.stalled and outcome.state is PolicyState.ERROR
    assert outcome.active == before and outcome.detected == outcome.resolved == outcome.untracked == ()
