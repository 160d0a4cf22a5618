"""Thin kopf handlers, on DriftPolicy objects only: a scan loop per policy, wake-ups, cleanup.

- One daemon per DriftPolicy runs scans one after another (so scans of a policy never overlap),
  every `spec.interval` (never more often than the operator's minimum interval), and soon when the
  spec changes (generation) or the annotation `kubedrift.dev/scan-requested-at` changes.
  `spec.suspend: true` pauses it. Scans run on the FairScanPool (see kubedrift.scheduling).
- Raw watch events (no state, no writes) wake the loop early.
- Deleting a policy deletes its DriftReports (the finalizer keeps the policy until then).
- When the loop stops (another replica leads: kopf pauses this one; or the operator stops), the
  engine releases the policy: this process then exports no drift series for it.

Workloads are never handled by kopf: the engine only reads them.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from typing import Any

import kopf

from kubedrift.engine import Engine
from kubedrift.model import GROUP, POLICY_PLURAL, SCAN_REQUEST_ANNOTATION, VERSION
from kubedrift.policy import DEFAULT_INTERVAL, PolicyError, parse_duration, parse_policy
from kubedrift.scheduling import FairScanPool, request_cooldown

log = logging.getLogger(__name__)



def scan_marker(body: Any) -> tuple[Any, Any]:
    """What makes a scan due at once: a new spec generation or a new scan request."""
    meta = body.get("metadata") or {}
    return meta.get("generation"), (meta.get("annotations") or {}).get(SCAN_REQUEST_ANNOTATION)


def schedule_of(body: dict[str, Any], min_interval: float = 0.0) -> tuple[float, bool]:
    """(seconds between scheduled scans, suspended) from the parsed policy: `spec.interval`, never less than
    `min_interval`. An invalid policy is scanned (to report why in its status) at the default interval."""
    try:
        spec = parse_policy(body)
    except PolicyError:
        return max(parse_duration(DEFAULT_INTERVAL), min_interval), False
    return max(spec.interval_seconds, min_interval), spec.suspend


class PolicyLoops:
    """Per-policy wake-up events and in-flight scans, shared by the handlers of one operator."""

    def __init__(self, engine: Engine, pool: FairScanPool | None = None, *, min_interval: float = 0.0) -> None:
        self.engine = engine
        self.pool = pool or FairScanPool()
        self.min_interval = min_interval
        self.wakeups: dict[str, asyncio.Event] = {}
        self.scanned: dict[str, tuple[Any, Any]] = {}
        self.inflight: dict[str, asyncio.Future[Any]] = {}

    def wakeup(self, key: str) -> asyncio.Event:
        return self.wakeups.setdefault(key, asyncio.Event())

    async def run(self, key: str, body: Any, stopped: Any) -> None:
        wakeup = self.wakeup(key)
        namespace = key.partition("/")[0]
        try:
            while not stopped:
                wakeup.clear()
                snapshot = copy.deepcopy(dict(body))
                self.scanned[key] = scan_marker(snapshot)
                interval, suspended = schedule_of(snapshot, self.min_interval)
                started = time.monotonic()
                if suspended:
                    log.info("policy %s is suspended; not scanning", key)
                    await asyncio.to_thread(self.engine.stop_watching, snapshot)
                else:
                    # Waits for the namespace's turn; once started, shielded: a scan that started finishes
                    # (and publishes) even if the loop is cancelled.
                    future = await self.pool.start(namespace, self.engine.scan, snapshot)
                    self.inflight[key] = future
                    try:
                        await asyncio.shield(future)
                    finally:
                        if future.done():
                            self.inflight.pop(key, None)
                if await self._sleep(wakeup, stopped, interval):
                    # Woken by a request: start at once, unless the last scan started moments ago.
                    await self._sleep(None, stopped, started + request_cooldown(self.min_interval) - time.monotonic())
        finally:
            self.wakeups.pop(key, None)
            self.scanned.pop(key, None)
            self._release(key, copy.deepcopy(dict(body)))

    def _release(self, key: str, body: dict[str, Any]) -> None:
        """Once no scan of the policy runs here any more, this process stops exporting its drift."""
        future = self.inflight.get(key)
        if future is not None and not future.done():
            future.add_done_callback(lambda _: self.engine.release(body))
        else:
            self.engine.release(body)

    @staticmethod
    async def _sleep(wakeup: asyncio.Event | None, stopped: Any, seconds: float) -> bool:
        """Sleep `seconds` or until woken or stopped; True when woken."""
        if seconds <= 0:
            return False
        woken = asyncio.ensure_future(wakeup.wait() if wakeup is not None else asyncio.Event().wait())
        stopping = asyncio.ensure_future(stopped.wait())
        try:
            await asyncio.wait({woken, stopping}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            return woken.done() and not woken.cancelled()
        finally:
            woken.cancel()
            stopping.cancel()

    def notice(self, key: str, body: Any) -> None:
        if key in self.wakeups and self.scanned.get(key) != scan_marker(body):
            if (self.scanned.get(key) or (None, None))[0] != scan_marker(body)[0]:
                self.engine.spec_changed(key)  # no live change is judged by the old spec meanwhile
            self.wakeups[key].set()

    async def forget(self, key: str, body: Any) -> None:
        future = self.inflight.get(key)
        if future is not None:
            await asyncio.wait({future})
        namespace = key.partition("/")[0]
        done = await self.pool.start(namespace, self.engine.forget, copy.deepcopy(dict(body)))
        await done


def _key(kwargs: dict[str, Any]) -> str:
    return f"{kwargs.get('namespace')}/{kwargs.get('name')}"


def register(registry: kopf.OperatorRegistry, loops: PolicyLoops) -> None:
    """Register the DriftPolicy handlers on `registry` (kopf passes everything as keywords)."""

    @kopf.daemon(GROUP, VERSION, POLICY_PLURAL, id="scan-loop", registry=registry, cancellation_timeout=120.0)
    async def scan_loop(**kwargs: Any) -> None:
        await loops.run(_key(kwargs), kwargs["body"], kwargs["stopped"])

    @kopf.on.event(GROUP, VERSION, POLICY_PLURAL, id="wake-on-change", registry=registry)
    def wake_on_change(**kwargs: Any) -> None:
        if kwargs.get("type") in ("ADDED", "MODIFIED", None):
            loops.notice(_key(kwargs), kwargs["body"])

    @kopf.on.delete(GROUP, VERSION, POLICY_PLURAL, id="remove-reports", registry=registry)
    async def remove_reports(**kwargs: Any) -> None:
        await loops.forget(_key(kwargs), kwargs["body"])
