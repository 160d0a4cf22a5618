"""Notifications, records and reports translate the one outcome: one message per episode transition
(detected, escalated, resolved), never one per scan, and a remediated resolution says so everywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.support.drifts import drift
from tests.support.outcomes import Scans

from kubedrift.model import Remediation, RemediationMode, Severity, TransitionKind
from kubedrift.publish.notifications import announcements, webhook_body
from kubedrift.store.records import ScanJob, plan_scan

T0 = datetime(2026, 4, 1, 12, 0, 0, tzinfo=UTC)
WEB_MEDIUM = drift("Deployment", "shop", "web", severity=Severity.MEDIUM)
WEB_HIGH = drift("Deployment", "shop", "web", severity=Severity.HIGH)
API = drift("Service", "shop", "api", severity=Severity.LOW)


def _events(outcome: object) -> list[tuple[str, str, str | None]]:
    return [(a.event.value, a.resource_id, a.resolution) for a in announcements(outcome)]  # type: ignore[arg-type]


def test_one_announcement_per_transition_never_per_scan() -> None:
    scans = Scans()
    first = scans.scan(WEB_MEDIUM, API, at=T0)
    assert sorted(_events(first)) == [("detected", WEB_MEDIUM.id, None), ("detected", API.id, None)]
    assert _events(scans.scan(WEB_MEDIUM, API, at=T0 + timedelta(minutes=5))) == []
    escalated = scans.scan(WEB_HIGH, API, at=T0 + timedelta(minutes=10))
    [only] = announcements(escalated)
    assert (only.event, only.severity, only.previous_severity) == (TransitionKind.ESCALATED, Severity.HIGH,
                                                                   Severity.MEDIUM)
    assert only.first_seen == first.active[WEB_MEDIUM.id].first_seen  # same episode
    assert _events(scans.scan(WEB_MEDIUM, API, at=T0 + timedelta(minutes=15))) == []  # de-escalation: no news
    resolved = scans.scan(API, at=T0 + timedelta(minutes=20))
    assert _events(resolved) == [("resolved", WEB_MEDIUM.id, "fixed")]
    gone = scans.scan(at=T0 + timedelta(minutes=25), undeclared=[API.id])
    assert _events(gone) == [("resolved", API.id, "undeclared")]


def test_not_compared_is_silent() -> None:
    scans = Scans()
    scans.scan(WEB_HIGH, at=T0)
    assert _events(scans.scan(at=T0 + timedelta(minutes=5), unread={WEB_HIGH.id: "forbidden"})) == []


def test_a_remediated_drift_resolves_as_remediated_in_messages_and_records() -> None:
    scans = Scans()
    detected = scans.scan(WEB_HIGH, at=T0)
    at = T0 + timedelta(minutes=5)
    applied = Remediation(WEB_HIGH.id, RemediationMode.APPLY, "Succeeded", "applied Git's declared fields", at)
    outcome = scans.scan(at=at, remediations={WEB_HIGH.id: applied})
    assert outcome.resolved == (WEB_HIGH.id,) and outcome.resolution(WEB_HIGH.id) == "remediated"
    [message] = announcements(outcome)
    body = webhook_body(message)
    assert body["event"] == "resolved" and body["resolution"] == "remediated" and body["severity"] == "high"
    assert "put back to Git by kubedrift" in body["summary"]

    record = {"_id": "r1", "policy": detected.policy.id, "resourceId": WEB_HIGH.id, "state": "active",
              "firstSeen": T0, "lastScanAt": T0, "episode": 1, "severity": "high",
              "resource": WEB_HIGH.resource.to_json()}
    plan = plan_scan(ScanJob.of(outcome), {WEB_HIGH.id: record})
    [event] = [w.update["$setOnInsert"] for w in plan.events]
    assert event["type"] == "resolved" and event["resolution"] == "remediated"
    assert "remediated by kubedrift" in plan.records[0].update["$set"]["resolution"]


def test_a_failed_remediation_resolves_nothing() -> None:
    scans = Scans()
    scans.scan(WEB_HIGH, at=T0)
    at = T0 + timedelta(minutes=5)
    failed = Remediation(WEB_HIGH.id, RemediationMode.APPLY, "Failed", "403 Forbidden", at)
    outcome = scans.scan(WEB_HIGH, at=at, remediations={WEB_HIGH.id: failed})
    assert outcome.resolved == () and outcome.resolution(WEB_HIGH.id) is None and announcements(outcome) == []
