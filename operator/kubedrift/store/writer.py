"""A bounded queue drained by one background thread that retries with backoff.

Callers never block on the database: `submit` only appends. While writes fail the thread keeps the
item at the head and retries (exponential backoff), and `degraded_reason` says why; items are applied
strictly in order, so a later scan never overtakes an earlier one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

PERMANENT_ATTEMPTS = 3
"""A write failing for a reason other than an outage (a bug, a rejected document) is dropped after this."""


class RetryingWriter(Generic[T]):
    def __init__(
        self,
        apply: Callable[[T], None],
        *,
        is_transient: Callable[[BaseException], bool],
        maxsize: int = 10_000,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        name: str = "writer",
        on_state_change: Callable[[str | None], None] | None = None,
    ) -> None:
        self._apply = apply
        self._is_transient = is_transient
        self._maxsize = maxsize
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._name = name
        self._on_state_change = on_state_change
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.degraded_reason: str | None = None
        self.dropped = 0
        self.failures = 0
        self.written = 0

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._items) + (1 if self._busy else 0)

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
        with self._cond:
            if len(self._items) >= self._maxsize:
                self._items.popleft()
                self.dropped += 1
                log.error("%s: queue full (%d); dropped the oldest pending write", self._name, self._maxsize)
            self._items.append(item)
            self._cond.notify_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every submitted item is written; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._items or self._busy:
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

    def _run(self) -> None:
        backoff = self._initial_backoff
        attempts = 0
        while True:
            with self._cond:
                while not self._items and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                item = self._items[0]
                self._busy = True
            try:
                self._apply(item)
            except Exception as exc:
                self.failures += 1
                attempts += 1
                transient = self._is_transient(exc)
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                with self._cond:
                    self._busy = False
                    if not transient and attempts >= PERMANENT_ATTEMPTS:
                        log.error("%s: dropping a write after %d failures: %s", self._name, attempts, reason)
                        if self._items and self._items[0] is item:
                            self._items.popleft()
                        self.dropped += 1
                        attempts = 0
                        self._cond.notify_all()
                        continue
                    newly = self.degraded_reason is None
                    if newly:
                        log.warning("%s: write failed, retrying with backoff: %s", self._name, reason)
                    self.degraded_reason = reason
                if newly:
                    self._notify(reason)
                with self._cond:
                    deadline = time.monotonic() + backoff
                    while not self._stopping and (left := deadline - time.monotonic()) > 0:
                        self._cond.wait(left)
                backoff = min(backoff * 2, self._max_backoff)
                continue
            with self._cond:
                if self._items and self._items[0] is item:
                    self._items.popleft()
                self._busy = False
                self.written += 1
                recovered = self.degraded_reason is not None
                if recovered:
                    log.info("%s: writes succeed again; %d pending", self._name, len(self._items))
                self.degraded_reason = None
                self._cond.notify_all()
            if recovered:
                self._notify(None)
            backoff = self._initial_backoff
            attempts = 0
