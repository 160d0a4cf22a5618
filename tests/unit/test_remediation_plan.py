"""The remediation planner: what a scan may touch, and what it must leave alone."""

from __future__ import annotations

from tests.support.drifts import drift

from kubedrift.model import Fix, RemediationMode, RemediationSpec, ResourceDrift, Severity
from kubedrift.publish.remediation import plan


def _fixable(kind: str, name: str, severity: Severity) -> ResourceDrift:
    found = drift(kind, "shop", name, severity=severity)
    found.fix = Fix("apply", {"kind": kind})
    return found


WEB = _fixable("Deployment", "web", Severity.HIGH)
CFG = _fixable("ConfigMap", "cfg", Severity.LOW)
DB = _fixable("Secret", "db", Severity.CRITICAL)
SVC = _fixable("Service", "svc", Severity.MEDIUM)
ALL = [WEB, CFG, DB, SVC]
REPORTED = {d.id for d in ALL}


def _ids(drifts: tuple[ResourceDrift, ...]) -> list[str]:
    return [d.id for d in drifts]


def test_off_plans_nothing() -> None:
    chosen = plan(ALL, RemediationSpec(), reported=REPORTED, may_write=True)
    assert chosen.act == () and chosen.skipped == ()


def test_secrets_only_when_named_and_severity_and_kinds_filter() -> None:
    apply = RemediationSpec(mode=RemediationMode.APPLY, min_severity=Severity.MEDIUM, exclude_kinds=("Service",))
    assert _ids(plan(ALL, apply, reported=REPORTED, may_write=True).act) == [WEB.id]
    named = RemediationSpec(mode=RemediationMode.APPLY, include_kinds=("Secret", "ConfigMap"))
    assert _ids(plan(ALL, named, reported=REPORTED, may_write=True).act) == [DB.id, CFG.id]


def test_apply_needs_an_earlier_report_dry_run_does_not() -> None:
    reported = {WEB.id}
    assert _ids(plan(ALL, RemediationSpec(mode=RemediationMode.APPLY), reported=reported, may_write=True).act) == [
        WEB.id]
    assert _ids(plan(ALL, RemediationSpec(mode=RemediationMode.DRY_RUN), reported=reported, may_write=True).act) == [
        WEB.id, SVC.id, CFG.id]


def test_rate_limit_takes_the_most_severe_first() -> None:
    chosen = plan(ALL, RemediationSpec(mode=RemediationMode.APPLY, max_per_scan=2), reported=REPORTED, may_write=True)
    assert _ids(chosen.act) == [WEB.id, SVC.id]
    assert [(d.id, why.split(":")[0]) for d, why in chosen.skipped] == [(CFG.id, "rate limit")]


def test_no_identity_no_write() -> None:
    chosen = plan(ALL, RemediationSpec(mode=RemediationMode.APPLY), reported=REPORTED, may_write=False)
    assert chosen.act == () and len(chosen.skipped) == 3
    assert all("spec.serviceAccountName" in why for _, why in chosen.skipped)


def test_a_drift_without_fix_is_never_acted_on() -> None:
    bare = drift("Deployment", "shop", "nofix")
    assert plan([bare], RemediationSpec(mode=RemediationMode.DRY_RUN), reported={bare.id}, may_write=True).act == ()
