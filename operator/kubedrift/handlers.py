"""Thin kopf handlers, on DriftPolicy objects only: a scan loop per policy, wake-ups, cleanup.

- One daemon per DriftPolicy runs scans one after another (so scans of a policy never overlap),
  every `spec.interval`, and at once when the spec changes (generation) or the annotation
  `kubedrift.dev/scan-requested-at` changes. `spec.suspend: true` pauses it.
- Raw watch events (no state, no writes) wake the loop early.
- Deleting a policy deletes its DriftReports (the finalizer keeps the policy until then).

Workloads are never handled by kopf: the engine only reads them.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import kopf

from kubedrift.engine import SCAN_REQUEST_ANNOTATION, Engine
from kubedrift.policy import DEFAULT_INTERVAL, GROUP, VERSION, PolicyError, parse_duration

log = logging.getLogger(__name__)

PLURAL = "driftpolicies"


def scan_marker(body: Any) -> tuple[Any, Any]:
    """What makes a scan due at once: a new spec generation or a new scan request."""
    meta = body.get("metadata") or {}
    return meta.get("generation"), (meta.get("annotations") or {}).get(SCAN_REQUEST_ANNOTATION)


def interval_of(spec: Any) -> float:
    try:
        return parse_duration(str(spec.get("interval") or DEFAULT_INTERVAL))
    except PolicyError:
        return parse_duration(DEFAULT_INTERVAL)  # the scan itself reports the invalid field


class PolicyLoops:
    """Per-policy wake-up events and in-flight scans, shared by the handlers of one operator."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.wakeups: dict[str, asyncio.Event] = {}
        self.scanned: dict[str, tuple[Any, Any]] = {}
        self.inflight: dict[str, asyncio.Future[Any]] = {}

    def wakeup(self, key: str) -> asyncio.Event:
        return self.wakeups.setdefault(key, asyncio.Event())

    async def run(self, key: str, body: Any, stopped: Any) -> None:
        wakeup = self.wakeup(key)
        try:
            while not stopped:
                wakeup.clear()
                snapshot = copy.deepcopy(dict(body))
                self.scanned[key] = scan_marker(snapshot)
                spec = snapshot.get("spec") or {}
                if spec.get("suspend") is True:
                    log.info("policy %s is suspended; not scanning", key)
                else:
                    # Shielded: a scan that started finishes (and publishes) even if the loop is cancelled.
                    future = asyncio.ensure_future(asyncio.to_thread(self.engine.scan, snapshot))
                    self.inflight[key] = future
                    try:
                        await asyncio.shield(future)
                    finally:
                        if future.done():
                            self.inflight.pop(key, None)
                await self._sleep(wakeup, stopped, interval_of(spec))
        finally:
            self.wakeups.pop(key, None)
            self.scanned.pop(key, None)

    @staticmethod
    async def _sleep(wakeup: asyncio.Event, stopped: Any, seconds: float) -> None:
        woken = asyncio.ensure_future(wakeup.wait())
        stopping = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait({woken, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            stopping.cancel()

    def notice(self, key: str, body: Any) -> None:
        if key in self.wakeups and self.scanned.get(key) != scan_marker(body):
            self.wakeups[key].set()

    async def forget(self, key: str, body: Any) -> None:
        future = self.inflight.get(key)
        if future is not None:
            await asyncio.wait({future})
        await asyncio.to_thread(self.engine.forget, copy.deepcopy(dict(body)))


def _key(kwargs: dict[str, Any]) -> str:
    return f"{kwargs.get('namespace')}/{kwargs.get('name')}"


def register(registry: kopf.OperatorRegistry, loops: PolicyLoops) -> None:
    """Register the DriftPolicy handlers on `registry` (kopf passes everything as keywords)."""

    @kopf.daemon(GROUP, VERSION, PLURAL, id="scan-loop", registry=registry, cancellation_timeout=120.0)
    async def scan_loop(**kwargs: Any) -> None:
        await loops.run(_key(kwargs), kwargs["body"], kwargs["stopped"])

    @kopf.on.event(GROUP, VERSION, PLURAL, id="wake-on-change", registry=registry)
    def wake_on_change(**kwargs: Any) -> None:
        if kwargs.get("type") in ("ADDED", "MODIFIED", None):
            loops.notice(_key(kwargs), kwargs["body"])

    @kopf.on.delete(GROUP, VERSION, PLURAL, id="remove-reports", registry=registry)
    async def remove_reports(**kwargs: Any) -> None:
        await loops.forget(_key(kwargs), kwargs["body"])
