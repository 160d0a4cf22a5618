"""Where and how often scans run: a bounded thread pool of their own, shared fairly between namespaces.

Scans block (git, the Kubernetes API, parsing) and run in threads. They get a pool of their own,
never asyncio's default executor, which /metrics, the API's store reads, token reviews and kopf's sync
handlers use: however slow the scans, those keep answering.

Fairness: a namespace runs at most `per_namespace` scans at once (default half the pool, at least one),
so one namespace with many policies, or with policies stuck on a slow git host, always leaves room for
the others; a free worker goes to the waiting namespace that got its last turn longest ago (round-robin
by namespace, newcomers first), not to the scan that arrived first.

Frequency: no policy is scanned on its schedule more often than `--min-interval`
(`KUBEDRIFT_MIN_INTERVAL`, default 30s), whatever its `spec.interval`. A requested scan (the scan-request
annotation, a new generation) starts at once unless the policy's previous scan started less than
`request_cooldown` ago (at most 5s, never more than the minimum interval).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_MIN_INTERVAL = "30s"
DEFAULT_SCAN_WORKERS = 4
MAX_REQUEST_COOLDOWN = 5.0


def request_cooldown(min_interval: float) -> float:
    return min(MAX_REQUEST_COOLDOWN, min_interval)


class FairScanPool:
    """Runs blocking scan functions on `workers` threads, at most `per_namespace` at once per namespace.

    Use from one event loop: `job = await pool.start(namespace, fn, *args)` waits for the namespace's
    turn (cancellable: a cancelled wait leaves the queue) and returns the running job's future.
    """

    def __init__(self, workers: int = DEFAULT_SCAN_WORKERS, per_namespace: int | None = None) -> None:
        if workers < 1:
            raise ValueError("a scan pool needs at least one worker")
        self.workers = workers
        self.per_namespace = max(1, per_namespace if per_namespace is not None else workers // 2)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kubedrift-scan")
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        self._running: dict[str, int] = {}
        self._total = 0
        self._turns = 0
        self._last_turn: dict[str, int] = {}
        """Per namespace with scans waiting or running: when it last got a worker (a turn number)."""

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    def running(self, namespace: str | None = None) -> int:
        return self._total if namespace is None else self._running.get(namespace, 0)

    async def start(self, namespace: str, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._waiting.setdefault(namespace, deque()).append(turn)
        self._dispatch()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release(namespace)  # granted just before the cancellation: give the slot back
            else:
                self._withdraw(namespace, turn)
            raise
        try:
            job = loop.run_in_executor(self._executor, fn, *args)
        except BaseException:
            self._release(namespace)
            raise
        job.add_done_callback(lambda _: self._release(namespace))
        return job

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _dispatch(self) -> None:
        while self._total < self.workers:
            eligible = [ns for ns in self._waiting if self._running.get(ns, 0) < self.per_namespace]
            if not eligible:
                return
            namespace = min(eligible, key=lambda ns: self._last_turn.get(ns, -1))
            queue = self._waiting[namespace]
            turn = queue.popleft()
            if not queue:
                del self._waiting[namespace]
            self._running[namespace] = self._running.get(namespace, 0) + 1
            self._total += 1
            self._turns += 1
            self._last_turn[namespace] = self._turns
            turn.set_result(None)

    def _withdraw(self, namespace: str, turn: asyncio.Future[None]) -> None:
        queue = self._waiting.get(namespace)
        if queue is None or turn not in queue:
            return
        queue.remove(turn)
        if not queue:
            del self._waiting[namespace]
            self._forget_if_idle(namespace)

    def _release(self, namespace: str) -> None:
        left = self._running.get(namespace, 0) - 1
        if left > 0:
            self._running[namespace] = left
        else:
            self._running.pop(namespace, None)
            self._forget_if_idle(namespace)
        self._total -= 1
        self._dispatch()

    def _forget_if_idle(self, namespace: str) -> None:
        if namespace not in self._waiting and namespace not in self._running:
            self._last_turn.pop(namespace, None)
