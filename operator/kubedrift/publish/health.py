"""The operator's one HTTP server: /healthz and /readyz here; /metrics and /api/v1 plug in.

`create_app()` returns the aiohttp application; other parts add their routes to it before it
starts (e.g. `app.router.add_get("/metrics", ...)`). Readiness has named degraded dependencies so one
(MongoDB, ...) can say it is down without making the pod unready: `readiness.degrade("mongodb")` and
`readiness.recover("mongodb")`. /readyz names the degraded dependencies with fixed messages; the detail a
caller passes (an exception's text) is never answered to anyone, since it may quote data the operator read.
"""

from __future__ import annotations

import threading

from aiohttp import web

READINESS_KEY: web.AppKey[Readiness] = web.AppKey("readiness")
DEPENDENCY_MESSAGES = {
    "kubernetes": "the Kubernetes API server did not answer",
    "mongodb": "MongoDB does not answer; drift history writes are queued and retried",
}
"""What /readyz says of each degraded dependency; any other name gets UNKNOWN_MESSAGE."""
UNKNOWN_MESSAGE = "unavailable"


class Readiness:
    """Ready once the operator runs; degraded while any named reason is set. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self._not_ready_reason = "starting"
        self._degraded: set[str] = set()

    def mark_ready(self) -> None:
        with self._lock:
            self._ready = True
            self._not_ready_reason = ""

    def mark_not_ready(self, reason: str) -> None:
        with self._lock:
            self._ready = False
            self._not_ready_reason = reason

    def degrade(self, name: str, detail: str = "") -> None:
        """Mark dependency `name` degraded; `detail` is for the caller's own logs and is not kept."""
        with self._lock:
            self._degraded.add(name)

    def recover(self, name: str) -> None:
        with self._lock:
            self._degraded.discard(name)

    @property
    def degraded(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._degraded)

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._ready

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            if not self._ready:
                return {"status": "not ready", "reason": self._not_ready_reason}
            if self._degraded:
                names = sorted(self._degraded)
                return {"status": "degraded", "degraded": names,
                        "reasons": {n: DEPENDENCY_MESSAGES.get(n, UNKNOWN_MESSAGE) for n in names}}
            return {"status": "ok"}


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    readiness = request.app[READINESS_KEY]
    body = readiness.snapshot()
    # Degraded still serves: scans, reports and metrics go on while e.g. MongoDB is away.
    return web.json_response(body, status=200 if readiness.ready else 503)


def create_app(readiness: Readiness | None = None) -> web.Application:
    app = web.Application()
    app[READINESS_KEY] = readiness if readiness is not None else Readiness()
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    return app


async def start_server(app: web.Application, port: int, host: str = "0.0.0.0") -> web.AppRunner:
    """Start serving `app`; the caller calls `await runner.cleanup()` on exit."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
