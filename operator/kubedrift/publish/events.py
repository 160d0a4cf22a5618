"""Kubernetes Events on a DriftPolicy: drift detected / resolved / scan failed, one line each.

Translates the scan's outcome: its detected and resolved transitions, and a ScanFailed warning when a
scan stalls for a new reason (not again at every retry).
"""

from __future__ import annotations

import datetime
import logging
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from kubedrift.cluster.client import ApiError, KubeClient, resource_path
from kubedrift.model import API_VERSION, Drifted, PolicyRef, RemediationMode, ResourceDrift, ScanOutcome
from kubedrift.publish.status import one_line
from kubedrift.timestamps import format_time

log = logging.getLogger(__name__)

COMPONENT = "kubedrift"
MAX_PER_SCAN = 10
"""Above this many drifts in one scan, one summary event replaces the individual ones."""


def _where(drift: ResourceDrift) -> str:
    ref = drift.resource
    return f"{ref.kind} {ref.namespace}/{ref.name}" if ref.namespace else f"{ref.kind} {ref.name}"


def detected_message(drift: ResourceDrift) -> str:
    if drift.state.value == "missing":
        return f"Drift detected: {_where(drift)} is missing from the cluster (severity {drift.severity.label})"
    return (f"Drift detected: {_where(drift)} ({', '.join(drift.categories)}; {len(drift.changes)} changes; "
            f"severity {drift.severity.label}, score {drift.score})")


class EventRecorder:
    def __init__(self, client: KubeClient, instance: str = "") -> None:
        self._client = client
        self._instance = instance

    def post(self, policy: PolicyRef, reason: str, message: str, *, warning: bool, now: datetime.datetime) -> None:
        stamp = format_time(now)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{policy.name}.{secrets.token_hex(8)}", "namespace": policy.namespace},
            "involvedObject": {"apiVersion": API_VERSION, "kind": "DriftPolicy", "name": policy.name,
                               "namespace": policy.namespace, "uid": policy.uid},
            "reason": reason,
            "message": one_line(message),
            "type": "Warning" if warning else "Normal",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self._client.request("POST", resource_path("", "v1", "events", policy.namespace), body=body)
        except ApiError as exc:  # an event that cannot be posted never fails a scan
            log.warning("cannot post event %s on %s: %s", reason, policy.id, exc)

    def publish(self, outcome: ScanOutcome, previous_status: Mapping[str, Any]) -> None:
        """The events of one scan: drift detected and resolved, or the scan failed."""
        if outcome.stall is not None:
            self._scan_failed(outcome, previous_status)
            return
        detected = [v.drift for rid in outcome.detected if isinstance(v := outcome.verdicts[rid], Drifted)]
        self.drift_changes(outcome.policy, detected, outcome.resolved, outcome.untracked, outcome.finished)
        self.remediations(outcome)

    def remediations(self, outcome: ScanOutcome) -> None:
        """One event per write kubedrift made (or tried); a dry run only when its drift is new (not every scan)."""
        for rid, action in sorted(outcome.remediations.items()):
            if action.result == "Skipped":
                continue
            if action.mode is RemediationMode.DRY_RUN:
                if rid in outcome.detected:
                    self.post(outcome.policy, "RemediationDryRun", f"{rid}: {action.result}: {action.message}",
                              warning=action.result != "Succeeded", now=outcome.finished)
            elif action.applied:
                how = "matches Git again" if rid in outcome.resolved else "still differs after the fix"
                self.post(outcome.policy, "Remediated", f"{rid}: {action.message}; {how}",
                          warning=rid not in outcome.resolved, now=outcome.finished)
            else:
                self.post(outcome.policy, "RemediationFailed", f"{rid}: {action.message}", warning=True,
                          now=outcome.finished)

    def _scan_failed(self, outcome: ScanOutcome, previous_status: Mapping[str, Any]) -> None:
        """A warning when the policy newly stalls, or stalls for another reason; not at every retry."""
        assert outcome.stall is not None
        conditions = previous_status.get("conditions") or []
        before = next((c for c in conditions if isinstance(c, Mapping) and c.get("type") == "Stalled"), {})
        if before.get("status") == "True" and before.get("message") == one_line(outcome.stall.message):
            return
        self.post(outcome.policy, "ScanFailed", f"{outcome.stall.reason}: {outcome.stall.message}", warning=True,
                  now=outcome.finished)

    def drift_changes(self, policy: PolicyRef, detected: Sequence[ResourceDrift], resolved: Sequence[str],
                      untracked: Sequence[str], now: datetime.datetime) -> None:
        if len(detected) > MAX_PER_SCAN:
            worst = max(d.severity for d in detected)
            self.post(policy, "DriftDetected",
                      f"Drift detected on {len(detected)} resources (highest severity {worst.label}), "
                      f"e.g. {', '.join(_where(d) for d in detected[:3])}", warning=True, now=now)
        else:
            for drift in detected:
                self.post(policy, "DriftDetected", detected_message(drift), warning=True, now=now)
        if len(resolved) > MAX_PER_SCAN:
            self.post(policy, "DriftResolved", f"Drift resolved on {len(resolved)} resources, e.g. "
                      f"{', '.join(resolved[:3])}", warning=False, now=now)
        else:
            for resource_id in resolved:
                self.post(policy, "DriftResolved", f"Drift resolved: {resource_id} matches Git again",
                          warning=False, now=now)
        if untracked:
            self.post(policy, "DriftUntracked", f"No longer declared by the policy, drift not tracked any more: "
                      f"{', '.join(untracked[:MAX_PER_SCAN])}" + (" ..." if len(untracked) > MAX_PER_SCAN else ""),
                      warning=False, now=now)
