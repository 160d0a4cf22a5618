"""What a notification says: one announcement per drift episode transition, in two shapes.

An `Announcement` is built from the scan's outcome (a transition decided once, never per scan) and
holds no value of the object: the resource, severity, categories, the changed *paths*, who changed it
and when, and the DriftReport to look at. The receiver gets it as

- `webhook`: a versioned JSON body (`apiVersion: kubedrift.dev/notification/v1`, documented in the
  README); fields are only ever added within v1;
- `slack`: a Block Kit message for an incoming webhook (with a plain `text` fallback).
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kubedrift.model import (
    Change,
    Drifted,
    DriftState,
    NotificationTarget,
    ResourceDrift,
    ResourceRef,
    ScanOutcome,
    Severity,
    TransitionKind,
)
from kubedrift.publish.reports import report_name
from kubedrift.timestamps import format_optional_time

WEBHOOK_API_VERSION = "kubedrift.dev/notification/v1"
MAX_PATHS = 10
SLACK_HEADER_CHARS = 150
SLACK_TEXT_CHARS = 2900


@dataclass(frozen=True)
class Announcement:
    """One transition of one drift episode, as every notification shape tells it."""

    event: TransitionKind
    policy_namespace: str
    policy_name: str
    resource_id: str
    resource: ResourceRef
    severity: Severity
    at: datetime.datetime
    report: str
    """Name of the DriftReport (in the policy's namespace)."""
    categories: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    """Changed fields, paths only: never a value (Secret and ConfigMap values included)."""
    more_paths: int = 0
    missing: bool = False
    previous_severity: Severity | None = None
    changed_by: str | None = None
    changed_at: str | None = None
    first_seen: datetime.datetime | None = None
    revision: str = ""
    resolution: str | None = None
    """For `resolved`: fixed (matches Git again), remediated (kubedrift applied the fix) or undeclared."""

    def wanted_by(self, target: NotificationTarget) -> bool:
        return self.event in target.events and self.severity >= target.min_severity

    @property
    def where(self) -> str:
        ref = self.resource
        return f"{ref.kind} {ref.namespace}/{ref.name}" if ref.namespace else f"{ref.kind} {ref.name}"

    @property
    def report_command(self) -> str:
        return f"kubectl get driftreport -n {self.policy_namespace} {self.report} -o yaml"

    def headline(self) -> str:
        if self.event is TransitionKind.DETECTED:
            what = "is missing from the cluster" if self.missing else "drifted from Git"
            return f"{self.where} {what} ({self.severity.label})"
        if self.event is TransitionKind.ESCALATED:
            before = self.previous_severity.label if self.previous_severity else "?"
            return f"Drift on {self.where} escalated: {before} -> {self.severity.label}"
        how = {"remediated": "put back to Git by kubedrift", "undeclared": "no longer declared in Git"}.get(
            self.resolution or "", "matches Git again")
        return f"Drift on {self.where} resolved: {how}"


def _last_change(changes: Sequence[Change]) -> Change | None:
    dated = [c for c in changes if c.changed_at]
    if dated:
        return max(dated, key=lambda c: c.changed_at or "")
    return next((c for c in changes if c.changed_by), None)


def announce(
    event: TransitionKind,
    *,
    policy_namespace: str,
    policy_name: str,
    report: str,
    at: datetime.datetime,
    resource: ResourceRef,
    resource_id: str,
    severity: Severity,
    drift: ResourceDrift | None = None,
    previous_severity: Severity | None = None,
    first_seen: datetime.datetime | None = None,
    revision: str = "",
    resolution: str | None = None,
) -> Announcement:
    """The announcement of a transition; `drift` (the drift found now) for detected/escalated."""
    paths: list[str] = []
    categories: tuple[str, ...] = ()
    last = None
    if drift is not None:
        paths = [c.path for c in drift.changes if c.path]
        categories = tuple(drift.categories)
        last = _last_change(drift.changes)
    return Announcement(
        event=event, policy_namespace=policy_namespace, policy_name=policy_name, resource_id=resource_id,
        resource=resource, severity=severity, at=at, report=report, categories=categories,
        paths=tuple(paths[:MAX_PATHS]), more_paths=max(0, len(paths) - MAX_PATHS),
        missing=drift is not None and drift.state is DriftState.MISSING, previous_severity=previous_severity,
        changed_by=last.changed_by if last else None, changed_at=last.changed_at if last else None,
        first_seen=first_seen, revision=revision, resolution=resolution,
    )


def announcements(outcome: ScanOutcome) -> list[Announcement]:
    """The transitions the outcome decided, one announcement each (a scan without transitions has none)."""
    policy = outcome.policy
    found: list[Announcement] = []

    def of(event: TransitionKind, rid: str, **kwargs: Any) -> Announcement:
        return announce(event, policy_namespace=policy.namespace, policy_name=policy.name,
                        report=report_name(policy, rid), at=outcome.finished, resource_id=rid,
                        revision=outcome.revision or "", **kwargs)

    for event, ids in ((TransitionKind.DETECTED, outcome.detected), (TransitionKind.ESCALATED, outcome.escalated)):
        for rid in ids:
            verdict, active = outcome.verdicts.get(rid), outcome.active.get(rid)
            if not isinstance(verdict, Drifted) or active is None:
                continue
            before = outcome.before.get(rid)
            found.append(of(event, rid, resource=verdict.drift.resource, severity=verdict.drift.severity,
                            drift=verdict.drift, first_seen=active.first_seen,
                            previous_severity=before.severity if before else None))
    for rid in (*outcome.resolved, *outcome.untracked):
        ended = outcome.before.get(rid)
        if ended is None:
            continue
        found.append(of(TransitionKind.RESOLVED, rid, resource=ended.resource, severity=ended.severity,
                        first_seen=ended.first_seen, resolution=outcome.resolution(rid)))
    return found


def webhook_body(a: Announcement) -> dict[str, Any]:
    """The documented JSON body (v1)."""
    return {
        "apiVersion": WEBHOOK_API_VERSION,
        "kind": "DriftNotification",
        "event": a.event.value,
        "time": format_optional_time(a.at),
        "policy": {"namespace": a.policy_namespace, "name": a.policy_name},
        "resourceId": a.resource_id,
        "resource": a.resource.to_json(),
        "severity": a.severity.label,
        "previousSeverity": a.previous_severity.label if a.previous_severity else None,
        "state": "missing" if a.missing else "drifted",
        "categories": list(a.categories),
        "paths": list(a.paths),
        "morePaths": a.more_paths,
        "changedBy": a.changed_by,
        "changedAt": a.changed_at,
        "firstSeen": format_optional_time(a.first_seen),
        "resolution": a.resolution,
        "revision": a.revision,
        "report": {"namespace": a.policy_namespace, "name": a.report, "command": a.report_command},
        "summary": a.headline(),
    }


def _mrkdwn(text: str) -> str:
    """Slack's three control characters, escaped (names and paths are shown as they are, never as links)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_ICONS = {TransitionKind.DETECTED: ":warning:", TransitionKind.ESCALATED: ":rotating_light:",
          TransitionKind.RESOLVED: ":white_check_mark:"}


def slack_body(a: Announcement) -> dict[str, Any]:
    """A Block Kit message for a Slack incoming webhook."""
    headline = a.headline()
    fields = [f"*Severity*\n{a.severity.label}", f"*Policy*\n{_mrkdwn(a.policy_namespace)}/{_mrkdwn(a.policy_name)}"]
    if a.categories:
        fields.append(f"*Categories*\n{_mrkdwn(', '.join(a.categories))}")
    if a.changed_by or a.changed_at:
        fields.append(f"*Changed by*\n{_mrkdwn(a.changed_by or 'unknown')}"
                      + (f" at {_mrkdwn(a.changed_at)}" if a.changed_at else ""))
    if a.first_seen:
        fields.append(f"*First seen*\n{format_optional_time(a.first_seen)}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:SLACK_HEADER_CHARS], "emoji": True}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if a.paths:
        listed = "\n".join(f"• `{_mrkdwn(p)}`" for p in a.paths)
        if a.more_paths:
            listed += f"\n… and {a.more_paths} more"
        blocks.append({"type": "section", "text": {"type": "mrkdwn",
                                                    "text": ("*Changed fields*\n" + listed)[:SLACK_TEXT_CHARS]}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"{_ICONS[a.event]} `{_mrkdwn(a.report_command)}`"[:SLACK_TEXT_CHARS]}]})
    return {"text": f"{_ICONS[a.event]} {headline}", "blocks": blocks}


def render(target: NotificationTarget, a: Announcement) -> dict[str, Any]:
    return slack_body(a) if target.type == "slack" else webhook_body(a)
