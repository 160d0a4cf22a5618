"""DriftStore against a real MongoDB wire server: lifecycle, restarts, statistics, outages."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pymongo
import pytest
from tests.support.drifts import drift
from tests.support.mongo import MongoServer, mongo_base_uri, mongo_uri, own_mongo  # noqa: F401
from tests.support.outcomes import Scans
from tests.support.ports import free_port

from kubedrift.model import ActiveDrift, Category, Severity
from kubedrift.store import DriftStore, RecordQuery
from kubedrift.store.records import EVENTS, RECORDS

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
POLICY = "ops/shop"
WEB = drift("Deployment", "shop", "web")
API = drift("Service", "shop", "api", severity=Severity.MEDIUM, path="spec.ports[port=80].targetPort",
            desired=8080, live=9090, category=Category.PORT_CHANGE)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def open_store(uri: str) -> DriftStore:
    store = DriftStore(uri, timeout_ms=500, initial_backoff=0.05, max_backoff=0.2)
    store.start()
    return store


@pytest.fixture()
def store(mongo_uri: str) -> Iterator[DriftStore]:  # noqa: F811
    s = open_store(mongo_uri)
    yield s
    s.close()


def raw(uri: str) -> pymongo.database.Database:  # type: ignore[type-arg]
    return pymongo.MongoClient(uri, tz_aware=True, serverSelectionTimeoutMS=2000).get_default_database()


def test_lifecycle_episodes_and_statistics(store: DriftStore, mongo_uri: str) -> None:  # noqa: F811
    scans = Scans()
    store.record_scan(scans.scan(WEB, API, revision="r1", at=T0))
    store.record_scan(scans.scan(WEB, API, revision="r1", at=T0 + timedelta(minutes=5)))
    store.record_scan(scans.scan(WEB, revision="r2", at=T0 + timedelta(hours=2)))  # api fixed after 2h
    store.record_scan(scans.scan(revision="r3", at=T0 + timedelta(hours=4)))  # web fixed after 4h
    store.record_scan(scans.scan(WEB, revision="r3", at=T0 + timedelta(days=1)))  # web drifts again
    assert store.flush(10)

    db = raw(mongo_uri)
    assert sorted(db.list_collection_names()) == [EVENTS, RECORDS]
    indexes = db[RECORDS].index_information()
    assert indexes["policy_resource"]["unique"] is True
    assert db[EVENTS].index_information()["retention"]["expireAfterSeconds"] == 30 * 24 * 3600

    web = store.get_record("Deployment:shop:web")
    assert web is not None
    assert web["state"] == "active" and web["episode"] == 2 and web["occurrences"] == 4
    assert web["firstSeen"] == "2026-03-02T12:00:00.000Z" and web["resolvedAt"] is None
    assert [e["type"] for e in web["events"]] == ["detected", "resolved", "detected"]
    api = store.get_record("Service:shop:api", policy=POLICY)
    assert api is not None and api["state"] == "resolved" and api["resolvedAt"] == "2026-03-01T14:00:00.000Z"
    assert api["changes"][0]["live"] == 9090 and "r2" in api["resolution"]
    assert store.get_record("Service:shop:nope") is None

    stats = store.statistics()
    assert stats["total"] == 2 and stats["active"] == 1 and stats["resolved"] == 1
    assert stats["activePercent"] == 50.0
    assert stats["meanTimeToResolveSeconds"] == (2 * 3600 + 4 * 3600) / 2
    assert stats["activeBySeverity"]["high"] == 1
    assert stats["eventsInRetention"] == {"detected": 3, "changed": 0, "resolved": 2, "untracked": 0}


def test_filters_and_pagination(store: DriftStore) -> None:
    drifts = [drift("Deployment", "shop", f"web-{i:02d}") for i in range(7)]
    store.record_scan(Scans().scan(*drifts, API, at=T0))
    store.record_scan(Scans("ops", "other").scan(drift("ConfigMap", "billing", "cfg", severity=Severity.LOW), at=T0))
    assert store.flush(10)

    items, total = store.list_records(RecordQuery(policy=POLICY, kind="Deployment", limit=3, offset=0))
    assert total == 7 and len(items) == 3
    rest, _ = store.list_records(RecordQuery(policy=POLICY, kind="Deployment", limit=10, offset=3))
    assert len({i["resourceId"] for i in items + rest}) == 7
    assert store.list_records(RecordQuery(namespace="billing"))[1] == 1
    assert store.list_records(RecordQuery(severity="medium"))[0][0]["resourceId"] == "Service:shop:api"
    assert store.list_records(RecordQuery(state="resolved"))[1] == 0
    assert store.statistics(RecordQuery(policy="ops/other"))["total"] == 1


def test_restart_keeps_history_and_first_seen_follows_the_outcome(mongo_uri: str) -> None:  # noqa: F811
    scans = Scans()
    first = open_store(mongo_uri)
    first.record_scan(scans.scan(WEB, at=T0))
    assert first.flush(10)
    first.close()

    # A restarted operator: the outcome carries firstSeen (from the DriftReports); a drift the database
    # never saw (its write was lost) is stored with that firstSeen, not the time of this scan.
    scans.active[API.id] = ActiveDrift(API.resource, API.severity, datetime(2026, 2, 1, tzinfo=UTC))
    second = open_store(mongo_uri)
    second.record_scan(scans.scan(WEB, API, at=T0 + timedelta(hours=1)))
    assert second.flush(10)
    web, api = second.get_record("Deployment:shop:web"), second.get_record("Service:shop:api")
    assert web is not None and web["firstSeen"] == "2026-03-01T12:00:00.000Z" and web["occurrences"] == 2
    assert api is not None and api["firstSeen"] == "2026-02-01T00:00:00.000Z"
    second.close()


def test_forget_policy_untracks_its_active_drift(store: DriftStore) -> None:
    store.record_scan(Scans().scan(WEB, at=T0))
    store.forget_policy(POLICY, now=T0 + timedelta(minutes=1))
    assert store.flush(10)
    rec = store.get_record("Deployment:shop:web")
    assert rec is not None and rec["state"] == "none" and rec["resolution"] == "policy was deleted"
    assert store.statistics()["untracked"] == 1


def test_mongodb_killed_mid_run_loses_and_duplicates_nothing(own_mongo: MongoServer) -> None:  # noqa: F811
    uri = own_mongo.uri("history")
    store = open_store(uri)
    names = [f"web-{i}" for i in range(5)]
    scans = Scans()
    try:
        store.record_scan(scans.scan(drift("Deployment", "shop", names[0]), at=T0))
        assert store.flush(10)

        own_mongo.kill()
        # Scans go on while MongoDB is down: the calls return at once, writes queue up.
        for i in range(1, 5):
            last = scans.scan(*(drift("Deployment", "shop", n) for n in names[: i + 1]), at=T0 + timedelta(minutes=i))
            store.record_scan(last)
        assert wait_for(lambda: store.degraded_reason is not None)
        assert "MongoDB unavailable" in str(store.degraded_reason)
        assert store.pending >= 4

        own_mongo.start()
        assert store.flush(30)
        assert store.degraded_reason is None

        # Applying the last scan again (as a retry after a lost acknowledgement would) changes nothing.
        store.record_scan(last)
        assert store.flush(10)

        db = raw(uri)
        docs = list(db[RECORDS].find({"policy": POLICY}))
        assert sorted(d["resourceId"] for d in docs) == [f"Deployment:shop:{n}" for n in names]
        by_id = {d["resourceId"]: d for d in docs}
        assert by_id["Deployment:shop:web-0"]["occurrences"] == 5
        assert by_id["Deployment:shop:web-4"]["occurrences"] == 1
        assert by_id["Deployment:shop:web-0"]["firstSeen"] == T0
        assert by_id["Deployment:shop:web-3"]["firstSeen"] == T0 + timedelta(minutes=3)
        assert db[EVENTS].count_documents({"type": "detected"}) == 5
    finally:
        store.close(flush_timeout=1)


def test_writes_never_block_when_mongodb_is_unreachable() -> None:
    # Nothing listens on this port; record_scan must still return immediately and keep the work.
    store = DriftStore(f"mongodb://127.0.0.1:{free_port()}/kubedrift", timeout_ms=200, initial_backoff=0.05)
    store.start()
    try:
        store.record_scan(Scans().scan(WEB, at=T0))
        assert store.pending == 1
        assert wait_for(lambda: store.degraded_reason is not None)
        assert store.pending == 1
    finally:
        store.close(flush_timeout=0.1)


def _health_log() -> tuple[list[str | None], Callable[[str | None], None]]:
    seen: list[str | None] = []
    return seen, seen.append


def test_a_17_mb_value_is_bounded_and_holds_no_one_up(mongo_uri: str) -> None:  # noqa: F811
    health, hook = _health_log()
    store = DriftStore(mongo_uri, timeout_ms=500, initial_backoff=0.05, max_backoff=0.2, on_health=hook)
    store.start()
    try:
        huge = drift("ConfigMap", "team-a", "blob", path="data.blob", desired="x" * (17 * 1024 * 1024),
                     live="y", category=Category.CONFIGURATION_CHANGE)
        store.record_scan(Scans("team-a", "big").scan(huge, at=T0))
        store.record_scan(Scans("team-b", "small").scan(WEB, at=T0))
        assert store.flush(30)
        assert store.dropped == 0 and health == []  # nothing dropped, never a store-down signal
        big = store.get_record("ConfigMap:team-a:blob")
        assert big is not None and big["state"] == "active"
        desired = big["changes"][0]["desired"]
        assert desired.startswith(f"<{17 * 1024 * 1024 + 2} bytes, sha256:") and len(desired) < 100
        assert big["changes"][0]["live"] == "y"
        assert store.get_record("Deployment:shop:web", policy="team-b/small") is not None
    finally:
        store.close()


def test_a_write_mongodb_cannot_take_is_dropped_while_others_go_on(
        mongo_uri: str, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    # 2**70 comes from Git (`replicas: 1180591620717411303424`); BSON has no such integer, so the write
    # fails on every attempt although MongoDB answers: a poisoned write, not an outage.
    health, hook = _health_log()
    store = DriftStore(mongo_uri, timeout_ms=500, initial_backoff=1.0, max_backoff=2.0, on_health=hook)
    store.start()
    try:
        poisoned = drift("Deployment", "team-a", "web", desired=2**70, live=3)
        team_a = Scans("team-a", "app")
        store.record_scan(team_a.scan(poisoned, revision="r1", at=T0))
        store.record_scan(team_a.scan(drift("Deployment", "team-a", "api"), revision="r2",
                                      at=T0 + timedelta(minutes=1)))
        for i in range(3):
            store.record_scan(Scans("team-b", f"p{i}").scan(WEB, at=T0))

        # Other tenants' history is written while team-a's bad write still waits for its retry.
        assert wait_for(lambda: all(store.get_record("Deployment:shop:web", policy=f"team-b/p{i}")
                                    for i in range(3)), timeout=5)
        assert store.pending >= 1 and store.get_record("Deployment:team-a:api") is None

        assert store.flush(30)
        assert store.dropped == 1
        # team-a's later scan, queued behind the dropped one, went in after it.
        api = store.get_record("Deployment:team-a:api")
        assert api is not None and api["state"] == "active"
        assert store.get_record("Deployment:team-a:web") is None
        assert health == [] and store.degraded_reason is None  # MongoDB answered all along: no store-down

        dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert len(dropped) == 1
        assert "team-a/app" in dropped[0] and "Deployment:team-a:web" in dropped[0]
        assert str(2**70) not in caplog.text
    finally:
        store.close()
