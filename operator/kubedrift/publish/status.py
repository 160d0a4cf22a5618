"""DriftPolicy status: counts, revision, times, state, and Ready/Drifted/Stalled conditions.

Translates the scan's outcome: `state` is the outcome's policy state (as `kubedrift_policy_state`),
`drifted` and `bySeverity` count the active drift (compared now, or kept because it was not compared).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kubedrift.cluster.client import JSON_PATCH, MERGE_PATCH, KubeClient, resource_path
from kubedrift.model import GROUP, POLICY_PLURAL, VERSION, LoadError, PolicyRef, ScanOutcome
from kubedrift.timestamps import format_time

log = logging.getLogger(__name__)

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
    """One scan's outcome and what the status needs besides it."""

    outcome: ScanOutcome
    generation: int
    scan_request: str | None = None
    """Value of the `kubedrift.dev/scan-requested-at` annotation this scan saw (echoed back)."""
    publish_errors: Sequence[LoadError] = field(default_factory=list)
    """Reports that could not be written."""
    notifications: Sequence[dict[str, Any]] = field(default_factory=list)
    """Delivery state of each `spec.notifications` target (publish/delivery.py)."""


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


def highest(outcome: ScanOutcome) -> str:
    return max(d.severity for d in outcome.active.values()).label if outcome.active else "none"


def build_status(scan: ScanStatus, previous: dict[str, Any]) -> dict[str, Any]:
    outcome = scan.outcome
    stamp = format_time(outcome.finished)
    conditions_before = list(previous.get("conditions") or [])
    status: dict[str, Any] = {
        "observedGeneration": scan.generation,
        "lastScanTime": stamp,
        "state": outcome.state.label,
    }
    # What the last successful scan found stays visible while a later one fails.
    for key in ("revision", "lastSuccessfulScanTime", "resources", "drifted", "missing", "bySeverity",
                "highestSeverity"):
        if key in previous:
            status[key] = previous[key]
    all_errors = [*outcome.errors, *scan.publish_errors]
    errors = [{"file": e.file, "message": one_line(e.message)} for e in all_errors[:MAX_ERRORS]]
    if errors:
        status["errors"] = errors
    if outcome.revision:
        status["revision"] = outcome.revision
    if scan.scan_request is not None:
        status["lastHandledScanRequest"] = scan.scan_request
    if scan.notifications:
        status["notifications"] = list(scan.notifications)

    if outcome.stall is not None or outcome.result is None:
        reason = outcome.stall.reason if outcome.stall else "ScanFailed"
        message = outcome.stall.message if outcome.stall else ""
        status["conditions"] = [
            _condition(conditions_before, "Ready", False, reason, message, scan.generation, stamp),
            _condition(conditions_before, "Stalled", True, reason, message, scan.generation, stamp),
            _condition(conditions_before, "Drifted", bool(previous.get("drifted")), "LastKnown",
                       "drift as of the last successful scan", scan.generation, stamp),
        ]
        return status

    result = outcome.result
    drifted = len(outcome.active)
    status.update({
        "lastSuccessfulScanTime": stamp,
        "resources": result.resources,
        "drifted": drifted,
        "missing": result.missing,
        "bySeverity": outcome.by_severity(),
        "highestSeverity": highest(outcome),
    })
    if all_errors:
        first = all_errors[0]
        message = f"{len(all_errors)} error(s), the rest was compared; first: {first.file}: {first.message}"
        ready = _condition(conditions_before, "Ready", False, "PartialScan", message, scan.generation, stamp)
    else:
        ready = _condition(conditions_before, "Ready", True, "ScanSucceeded",
                           f"compared {result.resources} resources", scan.generation, stamp)
    kept = len(outcome.active.keys() & outcome.not_compared().keys())
    drift_message = (f"{drifted} resources drifted (highest {highest(outcome)})"
                     + (f", {kept} of them not compared in this scan" if kept else "")
                     if drifted else "no drift")
    status["conditions"] = [
        ready,
        _condition(conditions_before, "Stalled", False, "ScanSucceeded", "", scan.generation, stamp),
        _condition(conditions_before, "Drifted", bool(drifted), "DriftDetected" if drifted
                   else "NoDrift", drift_message, scan.generation, stamp),
    ]
    return status


class StatusWriter:
    def __init__(self, client: KubeClient) -> None:
        self._client = client

    def write(self, policy: PolicyRef, status: dict[str, Any]) -> None:
        path = resource_path(GROUP, VERSION, POLICY_PLURAL, policy.namespace, policy.name, "status")
        self._client.request("PATCH", path, body=[{"op": "add", "path": "/status", "value": status}],
                             content_type=JSON_PATCH)

    def write_notifications(self, policy_id: str, states: list[dict[str, Any]]) -> None:
        """Only `status.notifications`, between scans (a delivery started or stopped failing)."""
        namespace, _, name = policy_id.partition("/")
        path = resource_path(GROUP, VERSION, POLICY_PLURAL, namespace, name, "status")
        self._client.request("PATCH", path, body={"status": {"notifications": states}}, content_type=MERGE_PATCH)
