"""RetryingWriter with a backend that fails the way MongoDB does: down for everyone, or refusing one write."""

from __future__ import annotations

import itertools
import threading
import time

from kubedrift.store.writer import RetryingWriter


class Backend:
    """Applies "key:value" items; `down` fails every write (an outage), `refuse` fails matching items."""

    def __init__(self) -> None:
        self.down = False
        self.refuse: set[str] = set()
        self.applied: list[str] = []
        self.tries: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def write(self, item: str) -> None:
        with self.lock:
            self.tries.append((time.monotonic(), item))
        if self.down:
            raise ConnectionError("backend down")
        if item in self.refuse:
            raise ValueError(f"refused {item}")
        with self.lock:
            self.applied.append(item)

    def reachable(self, exc: BaseException) -> bool:
        return not self.down


def writer_for(backend: Backend, initial_backoff: float, max_backoff: float) -> tuple[RetryingWriter[str],
                                                                                      list[str | None]]:
    """A writer keyed by the part before ":", and the list of health changes it reports."""
    states: list[str | None] = []
    writer: RetryingWriter[str] = RetryingWriter(
        backend.write, key=lambda item: item.partition(":")[0], reachable=backend.reachable,
        on_state_change=states.append, initial_backoff=initial_backoff, max_backoff=max_backoff)
    return writer, states


def test_a_refused_write_holds_only_its_own_key_and_is_dropped_after_three_attempts() -> None:
    backend = Backend()
    backend.refuse.add("a:bad")
    writer, states = writer_for(backend, initial_backoff=0.3, max_backoff=1.0)
    writer.start()
    try:
        for item in ("a:bad", "a:later", "b:1", "c:1", "b:2"):
            writer.submit(item)
        assert writer.flush(10)
        # b and c went first; a's later item waited for a's refused one, in order.
        assert backend.applied == ["b:1", "c:1", "b:2", "a:later"]
        assert writer.dropped == 1 and [i for _, i in backend.tries].count("a:bad") == 3
        assert states == [] and writer.degraded_reason is None  # the backend answered: no outage
    finally:
        writer.stop()


def test_an_outage_holds_everything_in_order_and_is_reported_until_recovery() -> None:
    backend = Backend()
    backend.down = True
    writer, states = writer_for(backend, initial_backoff=0.01, max_backoff=0.05)
    writer.start()
    try:
        for item in ("a:1", "b:1", "a:2"):
            writer.submit(item)
        assert not writer.flush(0.3)
        assert writer.pending == 3 and writer.dropped == 0  # an outage never drops anything
        assert writer.degraded_reason == "ConnectionError"  # the error's kind, not its text
        backend.down = False
        assert writer.flush(5)
        assert backend.applied == ["a:1", "b:1", "a:2"]
        assert states == ["ConnectionError", None]
    finally:
        writer.stop()


def test_backoff_starts_over_after_a_drop() -> None:
    backend = Backend()
    backend.refuse.add("a:bad")
    writer, _ = writer_for(backend, initial_backoff=0.5, max_backoff=30.0)
    writer.start()
    try:
        writer.submit("a:bad")
        assert writer.flush(10) and writer.dropped == 1
        backend.refuse.add("a:bad2")
        writer.submit("a:bad2")
        assert writer.flush(10) and writer.dropped == 2
        tries = [t for t, item in backend.tries if item == "a:bad2"]
        # The second bad write waits 0.5s then 1s again, not the 2s and 4s that would follow the first one's.
        gaps = [later - earlier for earlier, later in itertools.pairwise(tries)]
        assert len(gaps) == 2 and gaps[0] < 1.5 and gaps[1] < 3.0
    finally:
        writer.stop()
