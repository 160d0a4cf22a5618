"""The shared live-object cache: one `KindWatch` per `WatchKey`, shared by every policy that needs it.

A policy (an "owner") declares its whole interest at each scan: which keys, and which objects of each
(`Wanted`). Watches start when the first owner needs them and stop when the last one lets go; the
objects a watch keeps are the union of what its owners want. Changes are passed to the listeners (the
incremental scan) from the watch threads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from kubedrift.cluster.client import KubeClient
from kubedrift.cluster.watch import KindWatch, ObjectName, Wanted, WatchKey, WatchSettings

log = logging.getLogger(__name__)

Listener = Callable[[WatchKey, frozenset[ObjectName]], None]


def _union(wants: list[Wanted]) -> Wanted:
    if any(w is None for w in wants):
        return None
    merged: set[ObjectName] = set()
    for w in wants:
        merged |= w or frozenset()
    return frozenset(merged)


class LiveCache:
    def __init__(self, settings: WatchSettings | None = None) -> None:
        self.settings = settings or WatchSettings()
        self._lock = threading.Lock()
        self._watches: dict[WatchKey, KindWatch] = {}
        self._interest: dict[str, dict[WatchKey, Wanted]] = {}
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _dispatch(self, key: WatchKey, names: frozenset[ObjectName]) -> None:
        for listener in list(self._listeners):
            try:
                listener(key, names)
            except Exception:
                log.exception("live-cache listener failed on %s", key.describe())

    def interest(self, owner: str, wanted: Mapping[WatchKey, Wanted], client: KubeClient) -> None:
        """Replace what `owner` needs: `client` reads as the identity every key names."""
        assert all(k.user == client.user for k in wanted), "a key's identity must be the client's"
        started: list[KindWatch] = []
        stopped: list[KindWatch] = []
        with self._lock:
            before = self._interest.get(owner, {})
            if wanted:
                self._interest[owner] = dict(wanted)
            else:
                self._interest.pop(owner, None)
            for key in before.keys() | wanted.keys():
                wants = [i[key] for i in self._interest.values() if key in i]
                watch = self._watches.get(key)
                if not wants:
                    if watch is not None:
                        stopped.append(self._watches.pop(key))
                elif watch is None:
                    watch = KindWatch(key, client, self._dispatch, self.settings, _union(wants))
                    self._watches[key] = watch
                    started.append(watch)
                else:
                    watch.want(_union(wants))
        for watch in started:
            log.info("watching %s", watch.key.describe())
            watch.start()
        for watch in stopped:
            log.info("no longer watching %s", watch.key.describe())
            watch.stop(timeout=0)

    def release(self, owner: str) -> None:
        """`owner` needs nothing any more (its policy is gone, or another replica scans it)."""
        stopped: list[KindWatch] = []
        with self._lock:
            before = self._interest.pop(owner, {})
            for key in before:
                if not any(key in i for i in self._interest.values()) and key in self._watches:
                    stopped.append(self._watches.pop(key))
        for watch in stopped:
            log.info("no longer watching %s", watch.key.describe())
            watch.stop(timeout=0)

    def watch(self, key: WatchKey) -> KindWatch | None:
        with self._lock:
            return self._watches.get(key)

    def owners(self, key: WatchKey) -> dict[str, Wanted]:
        """Who needs `key`, and which of its objects."""
        with self._lock:
            return {owner: i[key] for owner, i in self._interest.items() if key in i}

    def stop(self) -> None:
        with self._lock:
            watches = list(self._watches.values())
            self._watches.clear()
            self._interest.clear()
        for watch in watches:
            watch.stop()
