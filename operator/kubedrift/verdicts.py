"""The one place where a scan's verdicts and the drift lifecycle are decided.

The engine reads (source, cluster) and compares (diff); `judge` turns that into a frozen
`ScanOutcome` with exactly one verdict per resource in scope, and the transitions against the
drift that was active before (`previous`, read from the DriftReports: see docs/architecture.md).
Reports, MongoDB records, metrics, status and events only translate the outcome.
"""

from __future__ import annotations

import datetime
from collections.abc import Collection, Mapping, Sequence

from kubedrift.model import (
    ActiveDrift,
    Clean,
    Drifted,
    LoadError,
    NotCompared,
    PolicyRef,
    Remediation,
    ResourceDrift,
    ScanOutcome,
    ScanResult,
    Stall,
    Undeclared,
    Verdict,
)


def judge(
    policy: PolicyRef,
    *,
    finished: datetime.datetime,
    result: ScanResult,
    declared: Collection[str],
    unread: Mapping[str, str],
    previous: Mapping[str, ActiveDrift],
    incomplete: str | None = None,
    revision: str | None = None,
    errors: Sequence[LoadError] = (),
    read_errors: int = 0,
    interval_seconds: float | None = None,
    remediations: Mapping[str, Remediation] | None = None,

    scope: frozenset[str] | None = None,
) -> ScanOutcome:
    """The outcome of a scan that compared what it could read.

    `declared`: ids of the desired objects in the policy's scope; `unread`: those of them whose live
    state could not be read, with the reason; `incomplete`: why the manifests may not all have been
    read (a file failed to parse), so that an active drift that no longer shows up is not taken for
    one removed from Git. `scope`: the resources an incremental scan re-diffed (the others' results are
    those of the scans before).
    """
    drifts = {d.id: d for d in result.drifts}
    verdicts: dict[str, Verdict] = {}
    for rid in declared:
        if rid in unread:
            verdicts[rid] = NotCompared(unread[rid])
        elif rid in result.failed:
            verdicts[rid] = NotCompared(result.failed[rid])
        elif rid in drifts:
            verdicts[rid] = Drifted(drifts[rid])
        elif rid in result.compared:
            verdicts[rid] = Clean()
        elif rid in previous:
            verdicts[rid] = Undeclared()  # declared, but now excluded or annotated to be ignored
    for rid in previous:
        if rid not in verdicts:
            verdicts[rid] = NotCompared(incomplete) if incomplete else Undeclared()

    active: dict[str, ActiveDrift] = {}
    detected: list[str] = []
    resolved: list[str] = []
    untracked: list[str] = []
    escalated: list[str] = []
    for rid, verdict in sorted(verdicts.items()):
        before = previous.get(rid)
        if isinstance(verdict, Drifted):
            drift = verdict.drift
            first_seen = before.first_seen if before is not None else first_seen_of(drift, finished)
            active[rid] = ActiveDrift(drift.resource, drift.severity, first_seen)
            if before is None:
                detected.append(rid)
            elif drift.severity > before.severity:
                escalated.append(rid)
        elif before is None:
            continue
        elif isinstance(verdict, NotCompared):
            active[rid] = before
        elif isinstance(verdict, Clean):
            resolved.append(rid)
        else:
            untracked.append(rid)
    return ScanOutcome(
        policy=policy,
        finished=finished,
        revision=revision,
        result=result,
        verdicts=verdicts,
        active=active,
        detected=tuple(detected),
        resolved=tuple(resolved),
        untracked=tuple(untracked),
        escalated=tuple(escalated),
        before={rid: previous[rid] for rid in (*escalated, *resolved, *untracked)},
        remediations=dict(remediations or {}),
        errors=tuple(errors),
        read_errors=read_errors,
        interval_seconds=interval_seconds,
        scope=scope,
    )


def stalled(
    policy: PolicyRef,
    stall: Stall,
    *,
    finished: datetime.datetime,
    previous: Mapping[str, ActiveDrift] | None = None,
    revision: str | None = None,
    interval_seconds: float | None = None,
) -> ScanOutcome:
    """A scan that compared nothing: every drift known before stays active as it was."""
    kept = dict(previous or {})
    return ScanOutcome(
        policy=policy,
        finished=finished,
        revision=revision,
        verdicts={rid: NotCompared(stall.message) for rid in kept},
        active=kept,
        stall=stall,
        interval_seconds=interval_seconds,
    )


def first_seen_of(drift: ResourceDrift, now: datetime.datetime) -> datetime.datetime:
    """When a newly found drift began: its earliest attributed change (`since`, from managedFields), else now.

    Whole seconds, as the DriftReports keep it: the next scan reads back exactly this value.
    """
    since = drift.since_time()
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=datetime.UTC)
    return min([t for t in (since, now) if t is not None]).replace(microsecond=0)
