"""A notification receiver on 127.0.0.1: records every POST and answers as the test scripts it.

    with serve_receiver() as receiver:
        receiver.answers = [500, 500, 200]      # then 200 for ever
        ...  receiver.url("/hook")  ...  receiver.bodies()
        receiver.hold()  /  receiver.release()  # keep requests waiting (a slow receiver)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    answers: list[int] = field(default_factory=list)
    """Status codes to answer with, in order; 200 once they run out."""
    retry_after: str | None = None
    received: list[Received] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.gate.set()

    def url(self, path: str = "/hook") -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def bodies(self) -> list[Any]:
        with self.arrived:
            return [r.body for r in self.received]

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"expected {count} requests, got {len(self.received)}")
            return list(self.received)


@contextmanager
def serve_receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            receiver = holder["r"]
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.arrived:
                receiver.received.append(Received(self.path, dict(self.headers), json.loads(raw or b"null")))
                status = receiver.answers.pop(0) if receiver.answers else 200
                receiver.arrived.notify_all()
            receiver.gate.wait(30)
            self.send_response(status)
            if receiver.retry_after and status in (429, 503):
                self.send_header("Retry-After", receiver.retry_after)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status == 200 else b"secret-internal-detail")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    holder["r"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["r"]
    finally:
        holder["r"].release()
        server.shutdown()
        server.server_close()
