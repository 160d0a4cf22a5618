"""Live changes -> incremental re-diffs: the cache's watch events, gathered per policy and debounced.

A rollout touches one object many times in a second; the policies that declare it re-diff it once,
`debounce` seconds after the last event (and at most `max_delay` after the first, so that a steady
stream of events cannot postpone a verdict forever). Re-diffs run in a small pool, never two of one
policy at once; events that arrive meanwhile wait for the next round, and so do the changes of a
policy whose full scan is running (the pool's threads never wait for one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from kubedrift.cluster.cache import LiveCache
from kubedrift.cluster.watch import Changes, ObjectName, WatchKey

log = logging.getLogger(__name__)

Refresh = Callable[[str, Changes], bool]
"""Re-diff, for the policy with this id, the objects that changed; False: not now (the policy is busy)."""

DEBOUNCE = 0.2
MAX_DELAY = 1.0


class _Pending:
    def __init__(self, now: float) -> None:
        self.first = now
        self.last = now
        self.changes: dict[WatchKey, set[ObjectName]] = defaultdict(set)


class LiveChanges:
    """Listens to a `LiveCache`; calls `refresh(policy_id, changes)` once the changes of a policy settle."""

    def __init__(self, cache: LiveCache, refresh: Refresh, *, debounce: float = DEBOUNCE, max_delay: float = MAX_DELAY,
                 workers: int = 2) -> None:
        self._cache = cache
        self._refresh = refresh
        self._debounce = debounce
        self._max_delay = max_delay
        self._wake = threading.Condition()
        self._pending: dict[str, _Pending] = {}
        self._running: set[str] = set()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="live-diff")
        self._thread = threading.Thread(target=self._loop, name="live-changes", daemon=True)
        cache.add_listener(self.changed)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def changed(self, key: WatchKey, names: frozenset[ObjectName]) -> None:
        """From a watch thread: these objects of `key` changed (or became readable, or unreadable)."""
        owners = self._cache.owners(key)
        if not owners:
            return
        now = time.monotonic()
        with self._wake:
            for owner, wanted in owners.items():
                touched = names if wanted is None else names & wanted
                if not touched:
                    continue
                pending = self._pending.get(owner)
                if pending is None:
                    pending = self._pending[owner] = _Pending(now)
                pending.last = now
                pending.changes[key] |= touched
            self._wake.notify_all()

    def _due(self, now: float) -> tuple[list[str], float | None]:
        due, wait = [], None
        for owner, pending in self._pending.items():
            if owner in self._running:
                continue
            at = min(pending.last + self._debounce, pending.first + self._max_delay)
            if at <= now:
                due.append(owner)
            else:
                wait = at - now if wait is None else min(wait, at - now)
        return due, wait

    def _loop(self) -> None:
        with self._wake:
            while not self._stopped:
                due, wait = self._due(time.monotonic())
                for owner in due:
                    pending = self._pending.pop(owner)
                    self._running.add(owner)
                    changes = {k: frozenset(v) for k, v in pending.changes.items()}
                    self._pool.submit(self._run, owner, changes)
                if not due:
                    self._wake.wait(wait)

    def _run(self, owner: str, changes: Changes) -> None:
        done = True
        try:
            done = self._refresh(owner, changes)
        except Exception:
            log.exception("incremental re-diff of %s failed", owner)
        finally:
            with self._wake:
                self._running.discard(owner)
                if not done:  # again after another debounce, with whatever came meanwhile
                    pending = self._pending.setdefault(owner, _Pending(time.monotonic()))
                    pending.last = time.monotonic()
                    for key, names in changes.items():
                        pending.changes[key] |= names
                self._wake.notify_all()
