"""FairScanPool with real threads: bounded, fair per namespace, never in asyncio's default executor."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from kubedrift.handlers import schedule_of
from kubedrift.scheduling import FairScanPool, request_cooldown


class Scans:
    """Blocking "scans" that record when they start and wait for the test to let them finish."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.threads: set[str] = set()
        self.release = threading.Event()
        self.lock = threading.Lock()

    def scan(self, name: str) -> str:
        with self.lock:
            self.started.append(name)
            self.threads.add(threading.current_thread().name)
        assert self.release.wait(20), "the test never released the scans"
        return name


async def until(condition: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_one_namespace_with_many_slow_policies_cannot_starve_another() -> None:
    pool, scans = FairScanPool(workers=4), Scans()
    try:
        busy = [asyncio.create_task(pool.start("busy", scans.scan, f"busy-{i}")) for i in range(20)]
        await until(lambda: len(scans.started) == 2)
        await asyncio.sleep(0.1)
        assert len(scans.started) == 2  # half the pool at most for one namespace, the rest stays free
        quiet = await pool.start("quiet", scans.scan, "quiet-0")
        await until(lambda: "quiet-0" in scans.started)
        assert pool.running("busy") == 2 and pool.waiting == 18
        scans.release.set()
        assert await quiet == "quiet-0"
        for task in busy:
            await (await task)
        assert len(scans.started) == 21
        assert all(t.startswith("kubedrift-scan") for t in scans.threads)  # never asyncio's default executor
    finally:
        scans.release.set()
        pool.close()


async def test_free_workers_go_round_robin_by_namespace() -> None:
    pool, scans = FairScanPool(workers=1), Scans()
    try:
        first = await pool.start("a", scans.scan, "a-1")
        waiting = [asyncio.create_task(pool.start(ns, scans.scan, name)) for ns, name in
                   [("a", "a-2"), ("a", "a-3"), ("b", "b-1"), ("c", "c-1")]]
        await asyncio.sleep(0.05)
        scans.release.set()
        await first
        for task in waiting:
            await (await task)
        assert scans.started == ["a-1", "b-1", "c-1", "a-2", "a-3"]
    finally:
        pool.close()


async def test_a_cancelled_wait_leaves_the_queue_and_frees_nothing_it_did_not_take() -> None:
    pool, scans = FairScanPool(workers=1), Scans()
    try:
        running = await pool.start("a", scans.scan, "a-1")
        doomed = asyncio.create_task(pool.start("b", scans.scan, "b-1"))
        await until(lambda: pool.waiting == 1)
        doomed.cancel()
        with pytest.raises(asyncio.CancelledError):
            await doomed
        assert pool.waiting == 0 and pool.running() == 1
        scans.release.set()
        await running
        await until(lambda: pool.running() == 0)
        assert await (await pool.start("c", scans.scan, "c-1")) == "c-1"
        assert scans.started == ["a-1", "c-1"]
    finally:
        pool.close()


async def test_the_default_executor_stays_free_while_every_scan_worker_hangs() -> None:
    # 8 hanging scans: more than asyncio's default executor has threads on this machine (min(32, cpus + 4)).
    pool, scans = FairScanPool(workers=8), Scans()
    try:
        jobs = [asyncio.create_task(pool.start(f"ns-{i}", scans.scan, f"s-{i}")) for i in range(8)]
        await until(lambda: len(scans.started) == 8)
        # What /metrics and the API do (asyncio.to_thread) is not queued behind the scans.
        assert await asyncio.wait_for(asyncio.to_thread(lambda: "answer"), timeout=5) == "answer"
        scans.release.set()
        for job in jobs:
            await (await job)
    finally:
        scans.release.set()
        pool.close()


def test_intervals_have_a_floor() -> None:
    def policy(interval: str, suspend: bool = False) -> dict[str, Any]:
        return {"metadata": {"namespace": "ops", "name": "p"},
                "spec": {"source": {"repoURL": "https://git.example/r.git"}, "interval": interval,
                         "suspend": suspend}}

    assert schedule_of(policy("1ms"), min_interval=30.0) == (30.0, False)
    assert schedule_of(policy("5m", suspend=True), min_interval=30.0) == (300.0, True)
    assert schedule_of(policy("nonsense"), min_interval=30.0) == (300.0, False)  # the default, 5m
    assert request_cooldown(30.0) == 5.0 and request_cooldown(1.0) == 1.0
