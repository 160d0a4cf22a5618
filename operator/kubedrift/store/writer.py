"""A bounded queue drained by one background thread, with retries that tell outages from bad writes.

Callers never block on the database: `submit` only appends. Items carry a key (the policy); items of one
key are applied strictly in order, items of different keys are independent. When a write fails, the
`reachable` callback decides whose fault it is:

- the backend is unreachable (an outage): every item waits, retried with exponential backoff, and
  `degraded_reason` says so (the store-down signal) until a write succeeds again;
- the backend answers (the write itself is bad: too big, not encodable, rejected): only that key waits
  (its own backoff) while other keys' items go on; after `max_attempts` the item is dropped and logged
  by `describe` (which names the policy and resources, never values).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
"""A write failing while the backend answers is dropped after this many attempts."""


@dataclass(eq=False)
class _Entry(Generic[T]):
    item: T
    key: str
    attempts: int = 0
    not_before: float = 0.0


class RetryingWriter(Generic[T]):
    def __init__(
        self,
        apply: Callable[[T], None],
        *,
        key: Callable[[T], str] = lambda item: "",
        reachable: Callable[[BaseException], bool] = lambda exc: False,
        describe: Callable[[T], str] = lambda item: "a write",
        describe_error: Callable[[BaseException], str] = lambda exc: type(exc).__name__,
        maxsize: int = 10_000,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_attempts: int = MAX_ATTEMPTS,
        name: str = "writer",
        on_state_change: Callable[[str | None], None] | None = None,
    ) -> None:
        """`reachable(exc)`: after a failed write, does the backend still answer (so the write is at fault)?
        `describe_error(exc)`: a short text for logs and health, without the values the write carried."""
        self._apply = apply
        self._key = key
        self._reachable = reachable
        self._describe = describe
        self._describe_error = describe_error
        self._maxsize = maxsize
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._max_attempts = max_attempts
        self._name = name
        self._on_state_change = on_state_change
        self._entries: deque[_Entry[T]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.degraded_reason: str | None = None
        self.dropped = 0

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._entries)

    def start(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop after the write in flight; unwritten items stay queued (flush first to drain)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            self._thread = None

    def submit(self, item: T) -> None:
        entry = _Entry(item, self._key(item))
        with self._cond:
            if len(self._entries) >= self._maxsize:
                oldest = self._entries.popleft()
                self.dropped += 1
                log.error("%s: queue full (%d); dropped the oldest pending write (%s)", self._name, self._maxsize,
                          self._describe(oldest.item))
            self._entries.append(entry)
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every submitted item is written or dropped; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._entries:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def _notify(self, reason: str | None) -> None:
        if self._on_state_change is None:
            return
        try:
            self._on_state_change(reason)
        except Exception:
            log.exception("%s: state change callback failed", self._name)

    def _next(self) -> _Entry[T] | None:
        """The first entry that may be tried now (call with the lock held); waits for one to be due."""
        while not self._stopping:
            now = time.monotonic()
            held: set[str] = set()
            wake: float | None = None
            for entry in self._entries:
                if entry.key in held:
                    continue  # an earlier item of this key waits: keep the order within the key
                if entry.not_before > now:
                    held.add(entry.key)
                    wake = entry.not_before if wake is None else min(wake, entry.not_before)
                    continue
                return entry
            self._cond.wait(None if wake is None else wake - now)
        return None

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            deadline = time.monotonic() + seconds
            while not self._stopping and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)

    def _set_degraded(self, reason: str | None) -> None:
        with self._cond:
            changed = (self.degraded_reason is None) != (reason is None)
            self.degraded_reason = reason
        if changed:
            if reason is None:
                log.info("%s: the backend answers again; %d write(s) pending", self._name, self.pending)
            else:
                log.warning("%s: backend unreachable, retrying with backoff: %s", self._name, reason)
            self._notify(reason)

    def _run(self) -> None:
        outage_backoff = self._initial_backoff
        while True:
            with self._cond:
                entry = self._next()
                if entry is None:
                    return
            try:
                self._apply(entry.item)
            except Exception as exc:
                reason = self._describe_error(exc)
                if not self._reachable(exc):
                    self._set_degraded(reason)
                    self._sleep(outage_backoff)
                    outage_backoff = min(outage_backoff * 2, self._max_backoff)
                    continue
                outage_backoff = self._initial_backoff
                self._set_degraded(None)
                self._failed_write(entry, reason)
                continue
            with self._cond:
                self._remove(entry)
            outage_backoff = self._initial_backoff
            self._set_degraded(None)

    def _failed_write(self, entry: _Entry[T], reason: str) -> None:
        """The backend answers but refuses this write: back this key off, or drop the item for good."""
        with self._cond:
            if entry not in self._entries:
                return  # the full queue dropped it meanwhile
            entry.attempts += 1
            if entry.attempts >= self._max_attempts:
                self._remove(entry)
                self.dropped += 1
                log.error("%s: dropped %s after %d failed attempts (%s); other writes go on", self._name,
                          self._describe(entry.item), entry.attempts, reason)
                return
            delay = min(self._initial_backoff * 2 ** (entry.attempts - 1), self._max_backoff)
            entry.not_before = time.monotonic() + delay
            log.warning("%s: %s failed (%s); retrying in %.1fs while other writes go on", self._name,
                        self._describe(entry.item), reason, delay)
            self._cond.notify_all()

    def _remove(self, entry: _Entry[T]) -> None:
        """Remove `entry` (lock held); it may be gone already if the full queue dropped it."""
        with contextlib.suppress(ValueError):
            self._entries.remove(entry)
        self._cond.notify_all()
