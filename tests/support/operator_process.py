"""`kubedrift run` as a real process for integration tests: started, awaited on /readyz, stopped."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 45.0,
             retry_on: tuple[type[BaseException], ...] = ()) -> T:
    """Poll `check` until it returns something truthy; exceptions in `retry_on` count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except retry_on as exc:
            value, last = None, exc
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


@contextmanager
def running_operator(args: Sequence[str], env: dict[str, str], log: Path, port: int) -> Iterator[str]:
    """Run `kubedrift run ARGS` (output appended to `log`) until the block ends; yields its base URL."""
    base = f"http://127.0.0.1:{port}"
    with log.open("a") as out:
        process = subprocess.Popen([sys.executable, "-m", "kubedrift", "run", *args],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)

    def ready() -> bool:
        assert process.poll() is None, f"the operator exited: {log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as answer:
                return bool(json.load(answer)["status"] == "ok")
        except OSError:
            return False

    try:
        wait_for(ready, "the operator's /readyz", timeout=60)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
