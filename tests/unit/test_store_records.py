"""The drift lifecycle planned by store.records, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from tests.support.drifts import drift
from tests.support.outcomes import Scans

from kubedrift.digest import value_digest
from kubedrift.model import Category, ScanOutcome, Severity
from kubedrift.store.records import ScanJob, Write, bson_time, plan_scan
from kubedrift.store.writer import RetryingWriter

T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
POLICY = "ops/shop"


def apply(db: dict[str, dict[str, Any]], writes: list[Write]) -> None:
    """A tiny in-memory interpreter of the planned writes (the integration tests use real MongoDB)."""
    for w in writes:
        if w.upsert:
            key = w.filter["resourceId"]
            if key not in db:
                db[key] = {"_id": key, **w.update["$setOnInsert"]}
            continue
        doc = next((d for d in db.values() if d["_id"] == w.filter["_id"]), None)
        assert doc is not None
        if doc.get("lastScanAt") is not None and not doc["lastScanAt"] < w.filter["lastScanAt"]["$lt"]:
            continue
        doc.update(w.update.get("$set", {}))
        for k, v in w.update.get("$inc", {}).items():
            doc[k] = doc.get(k, 0) + v


def run(db: dict[str, dict[str, Any]], outcome: ScanOutcome) -> list[str]:
    plan = plan_scan(ScanJob.of(outcome), db)
    apply(db, plan.records)
    return [w.update["$setOnInsert"]["type"] + ":" + w.update["$setOnInsert"]["resourceId"] for w in plan.events]


def test_lifecycle_active_changed_resolved_and_new_episode() -> None:
    db: dict[str, dict[str, Any]] = {}
    scans = Scans()
    web = drift("Deployment", "shop", "web")
    assert run(db, scans.scan(web, at=T0, revision="abc")) == ["detected:Deployment:shop:web"]
    rec = db["Deployment:shop:web"]
    # firstSeen in whole seconds, as the DriftReport keeps it (the next scan reads it back from there)
    assert rec["state"] == "active" and rec["firstSeen"] == T0.replace(microsecond=0) and rec["occurrences"] == 1

    assert run(db, scans.scan(web, at=T0 + timedelta(minutes=5))) == []
    assert rec["occurrences"] == 2 and rec["firstSeen"] == T0.replace(microsecond=0)

    changed = drift("Deployment", "shop", "web", live=7)
    assert run(db, scans.scan(changed, at=T0 + timedelta(minutes=10))) == ["changed:Deployment:shop:web"]
    assert rec["changes"][0]["live"] == 7

    assert run(db, scans.scan(at=T0 + timedelta(hours=1), revision="abc")) == ["resolved:Deployment:shop:web"]
    assert rec["state"] == "resolved" and rec["resolvedAt"] == bson_time(T0 + timedelta(hours=1))
    assert rec["resolveSecondsTotal"] == pytest.approx(3600.123) and rec["resolvedEpisodes"] == 1
    assert "abc" in rec["resolution"]

    later = T0 + timedelta(days=1)
    assert run(db, scans.scan(web, at=later)) == ["detected:Deployment:shop:web"]
    assert rec["state"] == "active" and rec["episode"] == 2 and rec["firstSeen"] == later.replace(microsecond=0)
    assert rec["resolvedAt"] is None and rec["occurrences"] == 4


def test_replaying_a_scan_plans_nothing() -> None:
    db: dict[str, dict[str, Any]] = {}
    scans = Scans()
    web = drift("Deployment", "shop", "web")
    first = scans.scan(web, at=T0)
    run(db, first)
    resolved = scans.scan(at=T0 + timedelta(minutes=1))
    run(db, resolved)
    snapshot = {k: dict(v) for k, v in db.items()}
    assert run(db, resolved) == []
    assert run(db, first) == []  # an older scan never rewinds a record
    assert db == snapshot


def test_not_compared_keeps_record_and_episode_undeclared_untracks() -> None:
    db: dict[str, dict[str, Any]] = {}
    scans = Scans()
    web, api = drift("Deployment", "shop", "web"), drift("Service", "shop", "api")
    run(db, scans.scan(web, api, at=T0))
    before = {k: dict(v) for k, v in db.items()}
    # A manifest file broke: nothing was compared against the drift we knew, nothing is written.
    assert run(db, scans.scan(at=T0 + timedelta(minutes=1), incomplete="apps/web.yaml: bad yaml")) == []
    assert run(db, scans.scan(at=T0 + timedelta(minutes=2), unread={api.id: "forbidden", web.id: "403"})) == []
    assert db == before
    # Readable again, still drifted: the same episode goes on, firstSeen unchanged.
    assert run(db, scans.scan(web, api, at=T0 + timedelta(minutes=3))) == []
    assert db[web.id]["episode"] == 1 and db[web.id]["firstSeen"] == T0.replace(microsecond=0)

    events = run(db, scans.scan(at=T0 + timedelta(minutes=4), undeclared=[web.id]))
    assert sorted(events) == ["resolved:Service:shop:api", "untracked:Deployment:shop:web"]
    assert db[web.id]["state"] == "none" and db[api.id]["state"] == "resolved"


def test_first_seen_follows_the_outcome_when_the_database_is_new() -> None:
    scans = Scans()
    web = drift("Deployment", "shop", "web")
    scans.scan(web, at=T0 - timedelta(days=3))  # known from before (in the operator: a DriftReport)
    db: dict[str, dict[str, Any]] = {}
    assert run(db, scans.scan(web, at=T0)) == ["detected:Deployment:shop:web"]
    assert db[web.id]["firstSeen"] == (T0 - timedelta(days=3)).replace(microsecond=0)


def test_secret_values_are_stored_only_as_digests() -> None:
    leaked = drift("Secret", "shop", "db", path="data.password", desired="aHVudGVyMg==", live="c2VjcmV0",
                   category=Category.SECRET_CHANGE, severity=Severity.HIGH)
    job = ScanJob.of(Scans().scan(leaked, at=T0))
    change = job.drifted[0].snapshot.changes[0]
    assert change["desired"] == value_digest("aHVudGVyMg==") and change["live"] == value_digest("c2VjcmV0")
    assert str(change["desired"]).startswith("hmac:") and change["desired"] != change["live"]
    assert "aHVudGVyMg==" not in repr(plan_scan(job, {}))
    already = drift("Secret", "shop", "db", path="data.password", desired="hmac:0123456789ab", live=None,
                    category=Category.SECRET_CHANGE)
    kept = ScanJob.of(Scans().scan(already, at=T0)).drifted[0].snapshot.changes[0]
    assert kept["desired"] == "hmac:0123456789ab" and kept["live"] is None


def test_writer_retries_in_order_and_reports_degraded_until_recovery() -> None:
    applied: list[int] = []
    failing = {"on": True}

    def write(item: int) -> None:
        if failing["on"]:
            raise ConnectionError("down")
        applied.append(item)

    writer: RetryingWriter[int] = RetryingWriter(write, reachable=lambda e: False, initial_backoff=0.01,
                                                 max_backoff=0.02, maxsize=3, describe_error=str)
    writer.start()
    try:
        for i in range(5):
            writer.submit(i)
        assert not writer.flush(0.2)
        assert writer.degraded_reason is not None and "down" in writer.degraded_reason
        assert writer.dropped == 2  # bounded: the oldest two made room
        failing["on"] = False
        assert writer.flush(5)
        assert applied == [2, 3, 4] and writer.degraded_reason is None
    finally:
        writer.stop()


def test_writer_drops_a_permanently_failing_item_and_goes_on() -> None:
    applied: list[str] = []

    def write(item: str) -> None:
        if item == "bad":
            raise ValueError("rejected")
        applied.append(item)

    writer: RetryingWriter[str] = RetryingWriter(write, reachable=lambda e: True, initial_backoff=0.01)
    writer.start()
    try:
        for item in ("a", "bad", "b"):
            writer.submit(item)
        assert writer.flush(5)
        assert applied == ["a", "b"] and writer.dropped == 1
    finally:
        writer.stop()


def test_first_seen_counts_from_the_earliest_attributed_change() -> None:
    # SPEC §2 Attribution: a change managedFields date before the first scan is not new.
    db: dict[str, dict[str, Any]] = {}
    edited = drift("Deployment", "shop", "web")
    edited.since = "2025-12-24T08:00:00Z"
    run(db, Scans().scan(edited, drift("Deployment", "shop", "api"), at=T0))
    assert db["Deployment:shop:web"]["firstSeen"] == datetime(2025, 12, 24, 8, 0, tzinfo=UTC)
    assert db["Deployment:shop:api"]["firstSeen"] == T0.replace(microsecond=0)
