"""DriftStore: drift history in MongoDB (pymongo). Writes go through a RetryingWriter, reads are direct.

Writes never block or raise into the caller: `record_scan` snapshots the outcome and queues it; a
background thread applies queued scans in order and retries with backoff while MongoDB is down or slow.
A write MongoDB answers but refuses holds up only its own policy's later writes and is dropped after a
few attempts (see store/writer.py); the store is degraded only while MongoDB does not answer a ping.
Reads (for the REST API) raise StoreUnavailable when MongoDB does not answer in time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pymongo
from bson.errors import InvalidDocument
from pymongo import UpdateOne
from pymongo.collection import Collection as MongoCollection
from pymongo.database import Database
from pymongo.errors import (
    BulkWriteError,
    ConnectionFailure,
    DocumentTooLarge,
    InvalidOperation,
    OperationFailure,
    PyMongoError,
)

from kubedrift.model import KubedriftError, ScanOutcome
from kubedrift.store.queries import RecordQuery, event_json, record_json, statistics_json
from kubedrift.store.records import EVENTS, RECORDS, ScanJob, Write, bson_time, plan_forget, plan_scan
from kubedrift.store.writer import RetryingWriter

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "kubedrift"
DEFAULT_EVENT_RETENTION = timedelta(days=30)
_DUPLICATE_KEY = 11000
_BAD_REQUEST_CODES = frozenset({2, 9, 14, 52, 55, 56, 57, 66})


class StoreUnavailable(KubedriftError, RuntimeError):
    """MongoDB did not answer a read; the message says why."""


@dataclass(frozen=True)
class ForgetJob:
    policy: str
    at: datetime


def is_transient(exc: BaseException) -> bool:
    """Outages and timeouts are retried until they pass; a rejected write is not."""
    if isinstance(exc, BulkWriteError | InvalidDocument | DocumentTooLarge | InvalidOperation):
        return False
    if isinstance(exc, OperationFailure) and exc.code in _BAD_REQUEST_CODES:
        return False
    return isinstance(exc, PyMongoError)


def describe_error(exc: BaseException) -> str:
    """What went wrong, for logs and health: the kind of error, never its text (which may quote values)."""
    if isinstance(exc, ConnectionFailure):
        return f"MongoDB unreachable ({type(exc).__name__})"
    if isinstance(exc, OperationFailure):
        return f"{type(exc).__name__} (code {exc.code})"
    return type(exc).__name__


def describe_job(job: ScanJob | ForgetJob) -> str:
    """Which policy and resources a queued write is about (ids only, no values)."""
    if isinstance(job, ForgetJob):
        return f"the deletion of policy {job.policy}"
    ids = [d.snapshot.resource_id for d in job.drifted]
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return f"the scan of policy {job.policy} at {job.at.isoformat()} ({len(ids)} drifted: {shown or 'none'})"


def _bulk(collection: MongoCollection[Any], writes: list[Write], *, ordered: bool) -> None:
    if not writes:
        return
    ops = [UpdateOne(w.filter, w.update, upsert=w.upsert) for w in writes]
    try:
        collection.bulk_write(ops, ordered=ordered)
    except BulkWriteError as exc:
        # A duplicate key on a keyed upsert means the same write already landed: nothing to do.
        errors = exc.details.get("writeErrors", [])
        if not errors or any(e.get("code") != _DUPLICATE_KEY for e in errors):
            raise


class DriftStore:
    def __init__(
        self,
        uri: str,
        *,
        timeout_ms: int = 3000,
        event_retention: timedelta = DEFAULT_EVENT_RETENTION,
        queue_size: int = 10_000,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        on_health: Callable[[str | None], None] | None = None,
    ) -> None:
        """`on_health` is called (from the writer thread) with a degraded reason, and with None on recovery."""
        self._on_health = on_health
        self._client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            uri,
            tz_aware=True,
            connect=False,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms * 3,
            appname="kubedrift",
            # Acknowledged only once journaled: a crash of MongoDB right after never loses history.
            journal=True,
        )
        self._db: Database[dict[str, Any]] = self._client.get_default_database(default=DEFAULT_DATABASE)
        self._retention = event_retention
        self._indexes_ready = False
        self._writer: RetryingWriter[ScanJob | ForgetJob] = RetryingWriter(
            self._apply,
            key=lambda job: job.policy,
            reachable=self._reachable_after,
            describe=describe_job,
            describe_error=describe_error,
            maxsize=queue_size,
            initial_backoff=initial_backoff,
            max_backoff=max_backoff,
            name="kubedrift-store",
            on_state_change=self._health_changed,
        )

    @classmethod
    def from_uri(cls, uri: str | None, **options: Any) -> DriftStore | None:
        """The store for `uri`; None without one (history is then off)."""
        return cls(uri, **options) if uri else None

    @property
    def database_name(self) -> str:
        return self._db.name

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._writer.start()

    def close(self, flush_timeout: float = 5.0) -> None:
        self._writer.flush(flush_timeout)
        self._writer.stop()
        self._client.close()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued write is applied; False if MongoDB is still unreachable at timeout."""
        return self._writer.flush(timeout)

    # -- health ---------------------------------------------------------------------------------

    @property
    def degraded_reason(self) -> str | None:
        """Why history writes are behind (MongoDB does not answer), or None; for logs and the store-down signal."""
        reason = self._writer.degraded_reason
        if reason is None:
            return None
        return f"MongoDB unavailable, {self._writer.pending} drift history write(s) queued: {reason}"

    def _health_changed(self, reason: str | None) -> None:
        if self._on_health is not None:
            self._on_health(None if reason is None else self.degraded_reason or reason)

    @property
    def pending(self) -> int:
        return self._writer.pending

    @property
    def dropped(self) -> int:
        return self._writer.dropped

    # -- writes (never block, never raise) -------------------------------------------------------

    def record_scan(self, outcome: ScanOutcome) -> None:
        """Queue the records and events of one scan's outcome (a stalled scan writes nothing)."""
        if outcome.stalled:
            return
        self._writer.submit(ScanJob.of(outcome))

    def forget_policy(self, policy_id: str, *, now: datetime) -> None:
        """The policy was deleted: its active records become state none."""
        self._writer.submit(ForgetJob(policy_id, bson_time(now)))

    def _apply(self, job: ScanJob | ForgetJob) -> None:
        self._ensure_indexes()
        records = self._db[RECORDS]
        existing = {doc["resourceId"]: doc for doc in records.find({"policy": job.policy})}
        plan = plan_forget(job.policy, job.at, existing) if isinstance(job, ForgetJob) else plan_scan(job, existing)
        # Events first: if the record writes fail midway, the retry plans the same events again
        # (same ids, no duplicates); records last, since a written record ends the replanning.
        _bulk(self._db[EVENTS], plan.events, ordered=False)
        _bulk(records, plan.records, ordered=True)

    def _ensure_indexes(self) -> None:
        if self._indexes_ready:
            return
        records = self._db[RECORDS]
        records.create_index([("policy", 1), ("resourceId", 1)], unique=True, name="policy_resource")
        records.create_index([("state", 1), ("lastSeen", -1)], name="state_lastSeen")
        records.create_index([("resourceId", 1)], name="resourceId")
        events = self._db[EVENTS]
        seconds = int(self._retention.total_seconds())
        try:
            events.create_index([("at", 1)], expireAfterSeconds=seconds, name="retention")
        except OperationFailure:
            # The retention changed since the index was made: adjust it in place.
            self._db.command("collMod", EVENTS, index={"name": "retention", "expireAfterSeconds": seconds})
        events.create_index([("policy", 1), ("resourceId", 1), ("at", -1)], name="policy_resource_at")
        self._indexes_ready = True

    # -- reads (raise StoreUnavailable) ----------------------------------------------------------

    def _read(self, what: str, fn: Any) -> Any:
        try:
            return fn()
        except PyMongoError as exc:
            raise StoreUnavailable(f"reading {what} from MongoDB failed: {type(exc).__name__}") from exc

    def list_records(self, query: RecordQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of records (most recently seen first) and the total matching the filters."""
        filt = query.mongo_filter()

        def run() -> tuple[list[dict[str, Any]], int]:
            coll = self._db[RECORDS]
            total = coll.count_documents(filt)
            cursor = (coll.find(filt).sort([("lastSeen", -1), ("policy", 1), ("resourceId", 1)])
                      .skip(query.offset).limit(query.limit))
            return [record_json(doc) for doc in cursor], total

        result: tuple[list[dict[str, Any]], int] = self._read("drift records", run)
        return result

    def get_record(self, resource_id: str, *, policy: str | None = None, events: int = 50) -> dict[str, Any] | None:
        """The most recently seen record of a resource (of `policy` when given), with its latest events."""

        def run() -> dict[str, Any] | None:
            filt: dict[str, Any] = {"resourceId": resource_id}
            if policy:
                filt["policy"] = policy
            doc = self._db[RECORDS].find_one(filt, sort=[("lastSeen", -1)])
            if doc is None:
                return None
            out = record_json(doc)
            cursor = (self._db[EVENTS].find({"policy": doc["policy"], "resourceId": resource_id})
                      .sort([("at", -1)]).limit(events))
            out["events"] = [event_json(e) for e in cursor]
            return out

        found: dict[str, Any] | None = self._read("a drift record", run)
        return found

    def statistics(self, scope: RecordQuery | None = None) -> dict[str, Any]:
        """Counts by state, percentages, mean time to resolve (over every resolved episode)."""
        filt = (scope or RecordQuery()).mongo_filter()
        events_filt = {("namespace" if k == "resource.namespace" else k): v for k, v in filt.items()}

        def run() -> dict[str, Any]:
            by_state = {
                row["_id"]: row
                for row in self._db[RECORDS].aggregate([
                    {"$match": filt},
                    {"$group": {"_id": "$state", "n": {"$sum": 1},
                                "resolvedEpisodes": {"$sum": "$resolvedEpisodes"},
                                "resolveSeconds": {"$sum": "$resolveSecondsTotal"}}},
                ])
            }
            severities = {
                row["_id"]: row["n"]
                for row in self._db[RECORDS].aggregate([
                    {"$match": {**filt, "state": "active"}},
                    {"$group": {"_id": "$severity", "n": {"$sum": 1}}},
                ])
            }
            events = {
                row["_id"]: row["n"]
                for row in self._db[EVENTS].aggregate([
                    {"$match": events_filt},
                    {"$group": {"_id": "$type", "n": {"$sum": 1}}},
                ])
            }
            return statistics_json(by_state, severities, events)

        stats: dict[str, Any] = self._read("statistics", run)
        return stats

    def _reachable_after(self, exc: BaseException) -> bool:
        """After a failed write: True when MongoDB answers, so the write itself is at fault."""
        return not is_transient(exc) or self.ping()

    def ping(self) -> bool:
        try:
            self._client.admin.command("ping")
            return True
        except PyMongoError:
            return False

