"""FailedAuthLimiter: a sliding window per client address, in bounded memory."""

from __future__ import annotations

import time

from kubedrift.publish.api_auth import FailedAuthLimiter


def test_failures_expire_with_the_window() -> None:
    limiter = FailedAuthLimiter(limit=2, window=0.5)
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") is None
    limiter.failed("10.0.0.1")
    wait = limiter.retry_after("10.0.0.1")
    assert wait is not None and 0 < wait <= 0.5
    assert limiter.retry_after("10.0.0.2") is None
    time.sleep(0.6)
    assert limiter.retry_after("10.0.0.1") is None


def test_memory_is_bounded_by_forgetting_the_least_recent_clients() -> None:
    limiter = FailedAuthLimiter(limit=1, window=60, max_clients=3)
    for i in range(5):
        limiter.failed(f"10.0.0.{i}")
    assert [limiter.retry_after(f"10.0.0.{i}") is not None for i in range(5)] == [False, False, True, True, True]
