"""jqPathExpressions of ignore rules: compiled when a policy is parsed, evaluated in a sandbox process.

A policy author writes the expression, so it is untrusted code. The jq binding runs it in C with
the GIL held: `def f: f; f` would freeze the whole operator (health checks, metrics, SIGTERM) and
`.zz[range(1e9)]` would allocate gigabytes. So evaluation happens in worker processes
(`python -m kubedrift.jq_sandbox`, the jq binding only) that:

- run with an address-space rlimit (`WORKER_MEMORY_BYTES`), so a runaway expression dies alone;
- get `TIME_LIMIT` seconds per object (Argo CD uses 1 s), while the caller waits in `select()`
  without the GIL; a worker that overruns is killed and replaced;
- return at most `MAX_PATHS` paths per expression (`limit/2` stops the generator there).

An expression that overran is quarantined for `QUARANTINE_SECONDS`: later objects fail fast with the
same error instead of costing a second each. The cost (a JSON round trip per compared object that a
jq rule matches) is measured in benchmarks/jq_cost.py (README there).
"""

from __future__ import annotations

import json
import os
import queue
import resource
import select
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import IO, Any, NoReturn

import jq

TIME_LIMIT = 1.0
MAX_PATHS = 10_000
MAX_EXPRESSION_CHARS = 4096
WORKER_MEMORY_BYTES = 1024 * 1024 * 1024
MAX_WORKERS = 2
QUARANTINE_SECONDS = 600.0
_MAX_ANSWER_BYTES = 64 * 1024 * 1024
START_TIMEOUT = 30.0

Path = list[Any]


class JqError(ValueError):
    """A jqPathExpression could not be evaluated within its limits; the message says which and why."""


def program_text(expression: str) -> str:
    """The program run for one expression: its paths, at most MAX_PATHS + 1 of them."""
    return f"[limit({MAX_PATHS + 1}; path({expression}))]"


def check_expression(expression: str) -> None:
    """Compile `expression` (raises ValueError with jq's reason); compiling is bounded, running is not."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        jq.compile(expression)  # positions in jq's message are then the author's
        jq.compile(program_text(expression))
    except ValueError as exc:
        raise ValueError(str(exc).splitlines()[0][:300] if str(exc) else "does not compile") from None


# ----- the worker process -----

def _serve(stdin: IO[str], stdout: IO[str]) -> None:
    programs: dict[str, Any] = {}
    stdout.write("ready\n")  # start-up (interpreter, jq) is not part of any expression's time
    stdout.flush()
    for line in stdin:
        request = json.loads(line)
        answer: list[list[Path] | str] = []
        for expression in request["expressions"]:
            program = programs.get(expression)
            if program is None:
                program = programs[expression] = jq.compile(program_text(expression))
            for document in request["documents"]:
                try:
                    paths = program.input_value(document).first()
                except ValueError:
                    paths = []  # the expression does not apply to this object's shape (as in Argo CD)
                if len(paths) > MAX_PATHS:
                    answer.append(f"selects more than {MAX_PATHS} paths")
                else:
                    answer.append(paths)
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


def _worker_main() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _serve(sys.stdin, sys.stdout)


# ----- the caller's side -----

class _Worker:
    def __init__(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        # Nothing of the operator's environment (kubeconfig, tokens) reaches the worker.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
               "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kubedrift.jq_sandbox"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self.stdin = self.process.stdin
        self.stdout_fd = self.process.stdout.fileno()
        self.buffer = b""
        if self._line(START_TIMEOUT) != b"ready":
            self.stop()
            raise JqError("the jq worker process did not start")

    def ask(self, request: bytes, timeout: float) -> bytes | None:
        """One answer line, or None when the worker overran `timeout` or died."""
        try:
            self.stdin.write(request)
            self.stdin.flush()
        except OSError:
            return None
        return self._line(timeout)

    def _line(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0 or len(self.buffer) > _MAX_ANSWER_BYTES:
                return None
            ready, _, _ = select.select([self.stdout_fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.stdout_fd, 1 << 16)
            if not chunk:
                return None  # died (memory limit) or exited
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


class JqSandbox:
    """A small pool of worker processes shared by every scan of the process (thread-safe)."""

    def __init__(self, *, workers: int = MAX_WORKERS, time_limit: float = TIME_LIMIT) -> None:
        self.time_limit = time_limit
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(workers)
        self._quarantine: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def paths(self, expression: str, documents: Sequence[Any]) -> list[list[Path]]:
        """For each document, the paths `expression` selects in it."""
        self._check_quarantine(expression)
        request = (json.dumps({"expressions": [expression], "documents": list(documents)}, default=str)
                   + "\n").encode()
        with self._slots:
            worker = self._take()
            line = worker.ask(request, self.time_limit)
            if line is None:
                worker.stop()
                self._fail(expression, f"did not finish within {self.time_limit:g}s "
                                       f"and {WORKER_MEMORY_BYTES // (1024 * 1024)} MiB")
            self._idle.put(worker)
        out: list[list[Path]] = []
        for item in json.loads(line):
            if isinstance(item, str):
                self._fail(expression, item)
            out.append([p for p in item if isinstance(p, list)])
        return out

    def _take(self) -> _Worker:
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return _Worker()
            if worker.process.poll() is None:
                return worker
            worker.stop()

    def _check_quarantine(self, expression: str) -> None:
        with self._lock:
            entry = self._quarantine.get(expression)
            if entry is not None and entry[0] > time.monotonic():
                raise JqError(entry[1])
            self._quarantine.pop(expression, None)

    def _fail(self, expression: str, why: str) -> NoReturn:
        message = f"jqPathExpression {expression[:200]!r} {why}; the objects it applies to are not compared"
        with self._lock:
            if len(self._quarantine) > 1024:
                self._quarantine.clear()
            self._quarantine[expression] = (time.monotonic() + QUARANTINE_SECONDS, message)
        raise JqError(message)

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().stop()
            except queue.Empty:
                return


_default: JqSandbox | None = None
_default_lock = threading.Lock()


def sandbox() -> JqSandbox:
    """The process-wide sandbox (workers start on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = JqSandbox()
        return _default


if __name__ == "__main__":
    _worker_main()
