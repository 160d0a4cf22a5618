"""DriftPolicy status: counts, revision, times, state, and Ready/Drifted/Stalled conditions."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass, field
from typing import Any

from kubedrift.cluster.client import JSON_PATCH, KubeClient, resource_path
from kubedrift.model import LoadError, ScanResult, Severity
from kubedrift.policy import GROUP, VERSION
from kubedrift.publish.reports import PolicyRef, format_time

log = logging.getLogger(__name__)

PLURAL = "driftpolicies"
MAX_ERRORS = 20
MAX_MESSAGE = 1024

CLEAN = "Clean"
DRIFTED = "Drifted"
ERROR = "Error"


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


@dataclass
class ScanStatus:
    """What one scan found, as the status needs it."""

    generation: int
    now: datetime.datetime
    result: ScanResult | None = None
    revision: str | None = None
    errors: list[LoadError] = field(default_factory=list)
    stalled_reason: str | None = None
    """Set when nothing could be compared (invalid policy, git failure, ...)."""
    stalled_message: str = ""
    scan_request: str | None = None
    """Value of the `kubedrift.dev/scan-requested-at` annotation this scan saw (echoed back)."""


def _condition(previous: list[dict[str, Any]], type_: str, status: bool, reason: str, message: str,
               generation: int, stamp: str) -> dict[str, Any]:
    value = "True" if status else "False"
    before = next((c for c in previous if c.get("type") == type_), None)
    since = before.get("lastTransitionTime") if before and before.get("status") == value else None
    return {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": one_line(message),
        "observedGeneration": generation,
        "lastTransitionTime": since or stamp,
    }


def highest(result: ScanResult) -> str:
    return max(d.severity for d in result.drifts).label if result.drifts else "none"


def build_status(scan: ScanStatus, previous: dict[str, Any]) -> dict[str, Any]:
    stamp = format_time(scan.now)
    conditions_before = list(previous.get("conditions") or [])
    status: dict[str, Any] = {
        "observedGeneration": scan.generation,
        "lastScanTime": stamp,
    }
    # What the last successful scan found stays visible while a later one fails.
    for key in ("revision", "lastSuccessfulScanTime", "resources", "drifted", "missing", "bySeverity",
                "highestSeverity"):
        if key in previous:
            status[key] = previous[key]
    errors = [{"file": e.file, "message": one_line(e.message)} for e in scan.errors[:MAX_ERRORS]]
    if errors:
        status["errors"] = errors
    if scan.revision:
        status["revision"] = scan.revision
    if scan.scan_request is not None:
        status["lastHandledScanRequest"] = scan.scan_request

    if scan.stalled_reason is not None or scan.result is None:
        reason = scan.stalled_reason or "ScanFailed"
        status["state"] = ERROR
        status["conditions"] = [
            _condition(conditions_before, "Ready", False, reason, scan.stalled_message, scan.generation, stamp),
            _condition(conditions_before, "Stalled", True, reason, scan.stalled_message, scan.generation, stamp),
            _condition(conditions_before, "Drifted", bool(previous.get("drifted")), "LastKnown",
                       "drift as of the last successful scan", scan.generation, stamp),
        ]
        return status

    result = scan.result
    by_severity = {s.label: 0 for s in Severity}
    by_severity.update(result.by_severity())
    status.update({
        "lastSuccessfulScanTime": stamp,
        "resources": result.resources,
        "drifted": result.drifted,
        "missing": result.missing,
        "bySeverity": by_severity,
        "highestSeverity": highest(result),
    })
    if errors:
        status["state"] = ERROR
        first = scan.errors[0]
        message = f"{len(scan.errors)} error(s), the rest was compared; first: {first.file}: {first.message}"
        ready = _condition(conditions_before, "Ready", False, "PartialScan", message, scan.generation, stamp)
    else:
        status["state"] = DRIFTED if result.drifted else CLEAN
        ready = _condition(conditions_before, "Ready", True, "ScanSucceeded",
                           f"compared {result.resources} resources", scan.generation, stamp)
    drift_message = (f"{result.drifted} of {result.resources} resources drifted (highest {highest(result)})"
                     if result.drifted else "no drift")
    status["conditions"] = [
        ready,
        _condition(conditions_before, "Stalled", False, "ScanSucceeded", "", scan.generation, stamp),
        _condition(conditions_before, "Drifted", bool(result.drifted), "DriftDetected" if result.drifted
                   else "NoDrift", drift_message, scan.generation, stamp),
    ]
    return status


class StatusWriter:
    def __init__(self, client: KubeClient) -> None:
        self._client = client

    def write(self, policy: PolicyRef, status: dict[str, Any]) -> None:
        path = resource_path(GROUP, VERSION, PLURAL, policy.namespace, policy.name, "status")
        self._client.request("PATCH", path, body=[{"op": "add", "path": "/status", "value": status}],
                             content_type=JSON_PATCH)
