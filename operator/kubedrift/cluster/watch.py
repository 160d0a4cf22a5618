"""One LIST + WATCH of one resource in one namespace (or cluster-wide), as one identity.

The loop is client-go's reflector in small: a paginated LIST (`limit`/`continue`) fills the store and
gives a resourceVersion; a WATCH from it with bookmarks keeps the store current and the version fresh; a
stream that ends (server timeout, network) is resumed from the last version; 410 Gone (the version was
compacted) means LIST again, and the difference between the old store and the new LIST is reported as
changes, so no event is lost. Errors back off exponentially. A LIST that fails (403, 500) puts the watch
in an error state that names the reason: its objects are not compared until a LIST succeeds again.

Memory: only the objects some subscriber wants are kept (`Wanted`), without `status`, as compact JSON.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubedrift.cluster.client import ApiError, KubeClient, WatchStream, resource_path

log = logging.getLogger(__name__)

ObjectName = tuple[str, str]
"""(namespace, name); namespace "" for cluster-scoped objects."""
Wanted = frozenset[ObjectName] | None
"""The objects a watch keeps; None keeps every object it sees."""
ChangeListener = Callable[["WatchKey", frozenset[ObjectName]], None]


@dataclass(frozen=True)
class WatchKey:
    """What one watch covers. The identity is part of it: a policy's reads go out as its identity."""

    user: str | None
    group: str
    version: str
    plural: str
    kind: str
    namespace: str = ""
    """The namespace watched; "" for a cluster-scoped resource."""

    @property
    def path(self) -> str:
        return resource_path(self.group, self.version, self.plural, self.namespace or None)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def describe(self) -> str:
        kind = f"{self.kind}.{self.group}" if self.group else self.kind
        where = f" in namespace {self.namespace}" if self.namespace else ""
        return f"{kind}{where}" + (f" as {self.user}" if self.user else "")


@dataclass(frozen=True)
class WatchSettings:
    page_size: int = 500
    timeout_seconds: int = 300
    """Asked of the server per WATCH (jittered by up to 20%); the stream is then resumed."""
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    poll_seconds: float = 60.0
    """How often to LIST again when the identity may list but not watch."""


@dataclass
class WatchStats:
    lists: int = 0
    list_pages: int = 0
    watches: int = 0
    events: int = 0
    bookmarks: int = 0
    expired: int = 0
    errors: int = 0


@dataclass(frozen=True)
class ListFailure:
    """Why the objects of a watch cannot be read now."""

    status: int
    reason: str
    message: str

    def as_error(self) -> ApiError:
        return ApiError(self.status, self.reason, self.message)


class _Expired(Exception):
    """410 Gone: the resourceVersion (or continue token) is too old; LIST again."""


def slim(body: dict[str, Any], key: WatchKey) -> bytes:
    """What the diff needs of a live object, as compact JSON: everything but `status`."""
    kept = {k: v for k, v in body.items() if k != "status"}
    kept.setdefault("apiVersion", key.api_version)  # list items often lack them
    kept.setdefault("kind", key.kind)
    return json.dumps(kept, separators=(",", ":")).encode()


def _name_of(body: dict[str, Any]) -> ObjectName:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


@dataclass
class _Store:
    objects: dict[ObjectName, bytes] = field(default_factory=dict)
    version: str = ""


class KindWatch:
    """The watch loop of one `WatchKey`, in a daemon thread. Thread-safe."""

    def __init__(self, key: WatchKey, client: KubeClient, listener: ChangeListener,
                 settings: WatchSettings | None = None, wanted: Wanted = None) -> None:
        self.key = key
        self.stats = WatchStats()
        self._client = client
        self._listener = listener
        self._settings = settings or WatchSettings()
        self._lock = threading.Lock()
        self._store = _Store()
        self._wanted = wanted
        self._settled = threading.Condition(self._lock)
        self._synced = False
        self._failure: ListFailure | None = None
        self._relist = True
        self._polling = False
        """The identity may list but not watch: LIST every `poll_seconds` instead."""
        self._stopped = threading.Event()
        self._nudged = threading.Event()
        """Set to end a backoff or poll wait early (stop, or a LIST asked for)."""
        self._lists_done = 0
        self._lists_started = 0
        self._listed_at: float | None = None
        self._stream: WatchStream | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch {key.describe()}", daemon=True)

    # ----- control -----

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self._nudged.set()
        self._cut()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def want(self, wanted: Wanted) -> None:
        """Keep these objects from now on. Objects not kept before are read by a new LIST."""
        with self._lock:
            before = self._wanted
            self._wanted = wanted
            if wanted is not None:
                self._store.objects = {n: b for n, b in self._store.objects.items() if n in wanted}
            grew = before is not None and (wanted is None or not wanted <= before)
            if grew:
                self._relist = True
        if grew:
            self._nudged.set()
            self._cut()

    def _cut(self) -> None:
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()

    def resync(self, max_age: float) -> int:
        """Ask for a fresh LIST (a full scan's resync: it catches revoked rights and anything missed) unless
        one finished less than `max_age` seconds ago; returns the LIST count to `wait_listed` for."""
        with self._lock:
            fresh = self._listed_at is not None and time.monotonic() - self._listed_at < max_age
            if fresh and not self._relist:
                return self._lists_done
            self._relist = True  # a LIST already asked for and not begun serves this request too
            target = self._lists_started + 1
        self._nudged.set()
        self._cut()
        return target

    def wait_listed(self, target: int, timeout: float) -> bool:
        """Wait until `target` LISTs have finished (or failed); False on timeout."""
        with self._settled:
            return self._settled.wait_for(lambda: self._lists_done >= target, timeout)

    def _pause(self, seconds: float) -> None:
        self._nudged.wait(seconds)
        self._nudged.clear()

    # ----- reading -----

    def wait_settled(self, timeout: float) -> bool:
        """Wait until the first LIST succeeded or failed; False on timeout."""
        with self._settled:
            return self._settled.wait_for(lambda: self._synced or self._failure is not None, timeout)

    @property
    def failure(self) -> ListFailure | None:
        with self._lock:
            return self._failure

    @property
    def synced(self) -> bool:
        with self._lock:
            return self._synced and self._failure is None

    @property
    def resource_version(self) -> str:
        with self._lock:
            return self._store.version

    def objects(self, names: Iterable[ObjectName] | None = None) -> list[dict[str, Any]]:
        """Fresh copies of the kept objects (of `names`, when given) that exist."""
        with self._lock:
            if names is None:
                raw = list(self._store.objects.values())
            else:
                raw = [b for b in (self._store.objects.get(n) for n in names) if b is not None]
        return [json.loads(b) for b in raw]

    def size(self) -> int:
        with self._lock:
            return len(self._store.objects)

    # ----- the loop -----

    def _run(self) -> None:
        delay = self._settings.backoff_initial
        while not self._stopped.is_set():
            relist = False
            try:
                with self._lock:
                    relist, self._relist = self._relist, False
                if relist:
                    self._list()
                    delay = self._settings.backoff_initial
                if self._polling:
                    self._pause(self._settings.poll_seconds)
                    with self._lock:
                        self._relist = True
                    continue
                if self._watch():
                    delay = self._settings.backoff_initial
                    continue
            except _Expired:
                self.stats.expired += 1
                with self._lock:
                    self._relist = True
                if not relist:
                    continue  # the watch's version is gone: LIST at once; a LIST that expires backs off
            except ApiError as exc:
                self.stats.errors += 1
                if self._stopped.is_set():
                    break
                log.info("watch of %s: %s; retrying in %.1fs", self.key.describe(), exc, delay)
            except Exception:  # a bug must not end the watch silently
                self.stats.errors += 1
                log.exception("watch of %s failed; retrying", self.key.describe())
                with self._lock:
                    self._relist = True
            self._pause(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._settings.backoff_max)

    def _list(self) -> None:
        """LIST page by page into a new store; report what differs from the old one."""
        with self._lock:
            self._lists_started += 1
        try:
            fresh = self._list_pages()
        except _Expired:
            fresh = self._list_pages()  # the continue token expired mid-way: once more from the start
        except ApiError as exc:
            self._fail(ListFailure(exc.status, exc.reason, exc.message))
            with self._lock:
                self._relist = True
            raise
        with self._lock:
            old = self._store.objects
            changed = {n for n in old.keys() | fresh.objects.keys() if old.get(n) != fresh.objects.get(n)}
            recovered = self._failure is not None
            if recovered:
                changed |= set(fresh.objects)  # they were not comparable: compare them again
            self._store = fresh
            self._synced = True
            self._failure = None
            self._lists_done += 1
            self._listed_at = time.monotonic()
            self._settled.notify_all()
        self.stats.lists += 1
        if recovered:
            log.info("watch of %s: readable again", self.key.describe())
        if changed:
            self._listener(self.key, frozenset(changed))

    def _list_pages(self) -> _Store:
        store = _Store()
        token = ""
        while True:
            query = {"limit": str(self._settings.page_size)}
            if token:
                query["continue"] = token
            try:
                body = self._client.request("GET", self.key.path, query=query) or {}
            except ApiError as exc:
                if exc.status == 410:
                    raise _Expired() from None
                raise
            self.stats.list_pages += 1
            with self._lock:
                wanted = self._wanted
            for item in body.get("items") or []:
                name = _name_of(item)
                if wanted is None or name in wanted:
                    store.objects[name] = slim(item, self.key)
            meta = body.get("metadata") or {}
            store.version = str(meta.get("resourceVersion") or "")
            token = str(meta.get("continue") or "")
            if not token:
                return store

    def _fail(self, failure: ListFailure) -> None:
        with self._lock:
            first = self._failure != failure
            self._failure = failure
            self._lists_done += 1
            self._listed_at = time.monotonic()
            names = frozenset(self._store.objects) | (self._wanted or frozenset())
            self._settled.notify_all()
        if first:
            log.warning("cannot list %s: %s %s: %s", self.key.describe(), failure.status, failure.reason,
                        failure.message)
            self._listener(self.key, names)

    def _watch(self) -> bool:
        """One WATCH stream from the stored version. True when it ended normally (resume it)."""
        settings = self._settings
        timeout = int(settings.timeout_seconds * random.uniform(0.8, 1.0)) or 1
        query = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout),
                 "resourceVersion": self.resource_version}
        try:
            stream = self._client.stream(self.key.path, query, read_timeout=timeout + 30.0)
        except ApiError as exc:
            if exc.status == 410:
                raise _Expired() from None
            if exc.forbidden:  # it may list (the LIST just worked) but not watch
                log.warning("may not watch %s (%s); listing it every %.0fs instead (grant watch with list)",
                            self.key.describe(), exc.message, self._settings.poll_seconds)
                self._polling = True
                return True
            raise
        with self._lock:
            cut = self._relist or self._stopped.is_set()
            self._stream = stream
        self.stats.watches += 1
        began = time.monotonic()
        try:
            if cut:
                return True
            for event in stream:
                self._apply(event)
        finally:
            stream.close()
            with self._lock:
                self._stream = None
        # A stream that a server closes at once, again and again, must not spin.
        return time.monotonic() - began > 1.0

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        body = event.get("object") or {}
        if kind == "ERROR":
            if body.get("code") == 410:
                raise _Expired()
            raise ApiError(int(body.get("code") or 0), str(body.get("reason") or "WatchError"),
                           str(body.get("message") or "the watch failed"))
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        if kind == "BOOKMARK":
            self.stats.bookmarks += 1
            with self._lock:
                self._store.version = version or self._store.version
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return
        self.stats.events += 1
        name = _name_of(body)
        changed = False
        with self._lock:
            if kind == "DELETED":
                changed = self._store.objects.pop(name, None) is not None
            elif self._wanted is None or name in self._wanted:
                fresh = slim(body, self.key)
                changed = self._store.objects.get(name) != fresh
                self._store.objects[name] = fresh
            if version:
                self._store.version = version
        if changed:
            self._listener(self.key, frozenset({name}))


Changes = Mapping[WatchKey, frozenset[ObjectName]]
"""Objects that changed, by the watch that saw them (what an incremental re-diff is given)."""
