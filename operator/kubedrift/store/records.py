"""Turning one scan's outcome into record and event writes, without any database.

The outcome has decided the lifecycle (verdicts.judge); this module only translates it. A record
(one per policy + resourceId) moves between states:
  (none yet) --detected--> active --resolved--> resolved --detected again--> active (a new episode) ...
  active --untracked (no longer declared, policy deleted)--> none
A resource that was not compared gets no write at all: its record and episode stay as they were.
Every write is keyed and guarded so that applying the same scan twice changes nothing: new records are
inserted with `$setOnInsert`, existing ones are only updated while their `lastScanAt` is older than the
scan, and events carry a deterministic `_id`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubedrift.bounded import bounded_changes
from kubedrift.digest import is_digest, value_digest
from kubedrift.hashes import content_hash
from kubedrift.model import JSON, Category, Drifted, ResourceDrift, ScanOutcome

RECORDS = "drift_records"
EVENTS = "drift_events"


class RecordState(enum.StrEnum):
    ACTIVE = "active"
    RESOLVED = "resolved"
    NONE = "none"
    """The resource left the policy's scope (gone from Git, policy deleted) while drifted."""


class EventType(enum.StrEnum):
    DETECTED = "detected"
    CHANGED = "changed"
    RESOLVED = "resolved"
    UNTRACKED = "untracked"


def bson_time(at: datetime) -> datetime:
    """UTC, truncated to the millisecond BSON keeps, so a stored time compares equal to its source."""
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def redact_change(change: dict[str, JSON]) -> dict[str, JSON]:
    """Defence in depth: a SecretChange value that is not already a keyed digest is replaced by one."""
    if change.get("category") != Category.SECRET_CHANGE.value:
        return change
    out = dict(change)
    for key in ("desired", "live"):
        value = out.get(key)
        if value is not None and not is_digest(value):
            out[key] = value_digest(value)
    return out


@dataclass(frozen=True)
class DriftSnapshot:
    """What the store keeps of one ResourceDrift: no raw objects, secrets as digests, values bounded."""

    resource_id: str
    resource: dict[str, str]
    drift_state: str
    severity: str
    score: int
    categories: list[str]
    changes: list[dict[str, JSON]]
    desired_hash: str
    live_hash: str

    @classmethod
    def of(cls, drift: ResourceDrift) -> DriftSnapshot:
        changes = [redact_change(c.to_json()) for c in drift.changes]
        return cls(
            resource_id=drift.id,
            resource=drift.resource.to_json(),
            drift_state=drift.state.value,
            severity=drift.severity.label,
            score=drift.score,
            categories=drift.categories,
            changes=bounded_changes(changes),  # the hashes below still see every full value
            desired_hash=content_hash([[c["path"], c["desired"]] for c in changes] + [drift.state.value]),
            live_hash=content_hash([[c["path"], c["live"]] for c in changes]),
        )


@dataclass(frozen=True)
class DriftEntry:
    snapshot: DriftSnapshot
    first_seen: datetime
    detected: bool
    """The drift became active in this scan (a new episode)."""


@dataclass(frozen=True)
class ScanJob:
    """A scan's outcome waiting to be written; built at call time, it holds no shared objects."""

    policy: str
    at: datetime
    revision: str
    drifted: tuple[DriftEntry, ...]
    resolved: tuple[str, ...]
    untracked: tuple[str, ...]
    resolutions: Mapping[str, str] = field(default_factory=dict)
    """How each resolved drift ended (`fixed`, `remediated`), as the outcome says."""

    @classmethod
    def of(cls, outcome: ScanOutcome) -> ScanJob:
        detected = set(outcome.detected)
        entries = tuple(
            DriftEntry(DriftSnapshot.of(v.drift), bson_time(outcome.active[rid].first_seen), rid in detected)
            for rid, v in sorted(outcome.decided().items()) if isinstance(v, Drifted)
        )
        return cls(policy=outcome.policy.id, at=bson_time(outcome.finished), revision=outcome.revision or "",
                   drifted=entries, resolved=tuple(outcome.resolved), untracked=tuple(outcome.untracked),
                   resolutions={rid: outcome.resolution(rid) or "fixed" for rid in outcome.resolved})


@dataclass
class Write:
    """One keyed update; `upsert` only for inserts guarded by `$setOnInsert`."""

    filter: dict[str, Any]
    update: dict[str, Any]
    upsert: bool = False


@dataclass
class Plan:
    events: list[Write] = field(default_factory=list)
    records: list[Write] = field(default_factory=list)


def _namespace(record: Mapping[str, Any]) -> str:
    resource = record.get("resource")
    return str(resource.get("namespace", "")) if isinstance(resource, Mapping) else ""


def _event(policy: str, resource_id: str, kind: EventType, at: datetime, **extra: Any) -> Write:
    event_id = f"{policy}|{resource_id}|{kind.value}|{at.isoformat()}"
    doc = {"_id": event_id, "policy": policy, "resourceId": resource_id, "type": kind.value, "at": at, **extra}
    return Write({"_id": event_id}, {"$setOnInsert": doc}, upsert=True)


def _seconds(later: datetime, earlier: datetime) -> float:
    return max(0.0, (later - earlier).total_seconds())


def _observed(snap: DriftSnapshot, job: ScanJob) -> dict[str, Any]:
    return {
        "resource": snap.resource,
        "driftState": snap.drift_state,
        "severity": snap.severity,
        "score": snap.score,
        "categories": snap.categories,
        "changes": snap.changes,
        "desiredHash": snap.desired_hash,
        "liveHash": snap.live_hash,
        "revision": job.revision,
        "lastSeen": job.at,
        "lastScanAt": job.at,
    }


def _guard(job: ScanJob, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"_id": record["_id"], "lastScanAt": {"$lt": job.at}}


def plan_scan(job: ScanJob, existing: Mapping[str, Mapping[str, Any]]) -> Plan:
    """Writes that bring the records of `job.policy` (`existing`, by resourceId) up to this scan."""
    plan = Plan()
    for entry in job.drifted:
        snap = entry.snapshot
        record = existing.get(snap.resource_id)
        observed = _observed(snap, job)
        tags = {"severity": snap.severity, "categories": snap.categories, "revision": job.revision,
                "namespace": snap.resource.get("namespace", "")}
        if record is None:
            doc = {
                "policy": job.policy, "resourceId": snap.resource_id, "state": RecordState.ACTIVE.value,
                "firstSeen": entry.first_seen, "resolvedAt": None, "resolution": None, "occurrences": 1,
                "episode": 1, "resolvedEpisodes": 0, "resolveSecondsTotal": 0.0, **observed,
            }
            plan.records.append(Write({"policy": job.policy, "resourceId": snap.resource_id},
                                      {"$setOnInsert": doc}, upsert=True))
            plan.events.append(_event(job.policy, snap.resource_id, EventType.DETECTED, job.at, episode=1, **tags))
            continue
        if _written(job, record):
            continue
        if record.get("state") == RecordState.ACTIVE.value and not entry.detected:
            # firstSeen follows the outcome, whose record of it (the DriftReports) is authoritative.
            update = {**observed, "firstSeen": entry.first_seen}
            plan.records.append(Write(_guard(job, record), {"$set": update, "$inc": {"occurrences": 1}}))
            if (record.get("desiredHash"), record.get("liveHash")) != (snap.desired_hash, snap.live_hash):
                plan.events.append(_event(job.policy, snap.resource_id, EventType.CHANGED, job.at,
                                          episode=record.get("episode", 1), **tags))
        else:
            episode = int(record.get("episode", 0)) + 1
            reopened = {**observed, "state": RecordState.ACTIVE.value, "firstSeen": entry.first_seen,
                        "resolvedAt": None, "resolution": None, "episode": episode}
            plan.records.append(Write(_guard(job, record), {"$set": reopened, "$inc": {"occurrences": 1}}))
            plan.events.append(_event(job.policy, snap.resource_id, EventType.DETECTED, job.at,
                                      episode=episode, **tags))

    for resource_id in job.resolved:
        record = existing.get(resource_id)
        if record is None or record.get("state") != RecordState.ACTIVE.value or _written(job, record):
            continue
        took = _seconds(job.at, record["firstSeen"])
        resolution = job.resolutions.get(resource_id, "fixed")
        how = "remediated by kubedrift (server-side apply)" if resolution == "remediated" else "matches Git again"
        message = f"live object {how} at revision {job.revision or 'unknown'}"
        plan.records.append(Write(_guard(job, record), {
            "$set": {"state": RecordState.RESOLVED.value, "resolvedAt": job.at, "resolution": message,
                     "revision": job.revision, "lastScanAt": job.at},
            "$inc": {"resolvedEpisodes": 1, "resolveSecondsTotal": took},
        }))
        plan.events.append(_event(job.policy, resource_id, EventType.RESOLVED, job.at,
                                  episode=record.get("episode", 1), severity=record.get("severity"),
                                  revision=job.revision, durationSeconds=took, namespace=_namespace(record),
                                  resolution=resolution))
    for resource_id in job.untracked:
        record = existing.get(resource_id)
        if record is None or record.get("state") != RecordState.ACTIVE.value or _written(job, record):
            continue
        plan.records.append(_untrack(job.at, "resource is no longer declared by the policy",
                                     job.revision, guard=_guard(job, record)))
        plan.events.append(_event(job.policy, resource_id, EventType.UNTRACKED, job.at,
                                  episode=record.get("episode", 1), revision=job.revision,
                                  namespace=_namespace(record)))
    return plan


def _written(job: ScanJob, record: Mapping[str, Any]) -> bool:
    """This scan (or a newer one) is already in the record."""
    return record.get("lastScanAt") is not None and bool(record["lastScanAt"] >= job.at)


def _untrack(at: datetime, why: str, revision: str, *, guard: dict[str, Any]) -> Write:
    return Write(guard, {"$set": {"state": RecordState.NONE.value, "resolvedAt": at, "resolution": why,
                                  "revision": revision, "lastScanAt": at}})


def plan_forget(policy: str, at: datetime, existing: Mapping[str, Mapping[str, Any]]) -> Plan:
    """The policy was deleted: its active records stop being tracked (state none)."""
    plan = Plan()
    at = bson_time(at)
    for resource_id, record in existing.items():
        if record.get("state") != RecordState.ACTIVE.value:
            continue
        if record.get("lastScanAt") is not None and record["lastScanAt"] >= at:
            continue
        guard = {"_id": record["_id"], "lastScanAt": {"$lt": at}}
        plan.records.append(_untrack(at, "policy was deleted", str(record.get("revision") or ""),
                                     guard=guard))
        plan.events.append(_event(policy, resource_id, EventType.UNTRACKED, at, episode=record.get("episode", 1),
                                  namespace=_namespace(record)))
    return plan
