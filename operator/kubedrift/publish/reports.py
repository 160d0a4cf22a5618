"""DriftReport custom resources: one per drifted object, in the policy's namespace, owned by it.

Reports translate the scan's outcome: a Drifted verdict is an Active report, a resolved or untracked
drift turns it Resolved, a NotCompared resource leaves its report exactly as it was. Reports are
rewritten only when their content changes (no churn on repeated scans), and deleted after the
retention period or with the policy. Changes are copied from the diff stage, which already hides
Secret values.

The Active reports are also the authoritative record of which drift was active before a scan and
since when (`ReportLedger.active`): they live in the cluster, survive restarts and leader changes,
and need no database (docs/architecture.md).
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubedrift.bounded import MAX_CHANGES, bounded_changes
from kubedrift.cluster.client import JSON_PATCH, ApiError, KubeClient, resource_path
from kubedrift.hashes import sha256_hex
from kubedrift.model import (
    API_VERSION,
    GROUP,
    REPORT_PLURAL,
    VERSION,
    ActiveDrift,
    Drifted,
    DriftState,
    PolicyRef,
    ResourceDrift,
    ResourceRef,
    ScanOutcome,
    Severity,
)
from kubedrift.publish.fix import report_command
from kubedrift.publish.ownership import owner_policy
from kubedrift.timestamps import format_time, parse_time

log = logging.getLogger(__name__)

LABEL_POLICY = "kubedrift.dev/policy"
LABEL_KIND = "kubedrift.dev/kind"
LABEL_NAMESPACE = "kubedrift.dev/namespace"
LABEL_NAME = "kubedrift.dev/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
ACTIVE = "Active"
RESOLVED = "Resolved"


@dataclass
class SyncResult:
    errors: list[str] = field(default_factory=list)
    """Reports that could not be written (the policy status lists them)."""


_LABEL_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_NAME_BAD = re.compile(r"[^a-z0-9-]+")


def label_value(text: str) -> str:
    """A valid label value (<= 63 chars, alphanumeric at both ends); long ones end in a hash."""
    value = _LABEL_BAD.sub("-", text).strip("-._")
    if len(value) > 63:
        value = value[:54].rstrip("-._") + "-" + sha256_hex(text, 8)
    return value


def report_name(policy: PolicyRef, resource_id: str) -> str:
    """Deterministic and short: `<kind>-<name>-<hash8>`, `<kind>-<namespace>-<name>-<hash8>` when the object
    lives outside the policy's (the report's) namespace; a valid DNS subdomain.

    The hash of policy name and resource id keeps names that sanitize alike apart. Reports named by an
    older release (`<policy>-<kind>-<namespace>-<name>-<hash8>`) are replaced on the next scan
    (`ReportPublisher.sync`).
    """
    kind, namespace, name = [*resource_id.split(":", 2), "", ""][:3]
    shown = namespace if namespace and namespace != policy.namespace else ""
    readable = "-".join(p for p in (kind, shown, name) if p)
    readable = _NAME_BAD.sub("-", readable.lower()).strip("-")[:200].rstrip("-")
    digest = sha256_hex(f"{policy.name}\0{resource_id}", 8)
    return f"{readable}-{digest}" if readable else digest


def summary(drift: ResourceDrift) -> str:
    ref = drift.resource
    where = f"{ref.kind} {ref.namespace}/{ref.name}" if ref.namespace else f"{ref.kind} {ref.name}"
    if drift.state is DriftState.MISSING:
        return f"{where} is in Git but missing from the cluster ({drift.severity.label})"
    count = len(drift.changes)
    return (f"{where}: {count} change{'s' if count != 1 else ''} "
            f"({', '.join(drift.categories)}), severity {drift.severity.label}, score {drift.score}")


def report_spec(policy: PolicyRef, drift: ResourceDrift, revision: str, first_seen: str) -> dict[str, Any]:
    changes = bounded_changes([change.to_json() for change in drift.changes[:MAX_CHANGES]])
    spec: dict[str, Any] = {
        "policy": policy.name,
        "resourceId": drift.id,
        "resource": drift.resource.to_json(),
        "driftState": drift.state.value,
        "severity": drift.severity.label,
        "score": drift.score,
        "categories": drift.categories,
        "changes": changes,
        "revision": revision,
        "summary": summary(drift),
        "firstSeen": first_seen,
    }
    if drift.fix is not None:
        spec["fix"] = {**drift.fix.to_json(), "command": report_command(
            drift.fix, drift.resource, report_name(policy, drift.id), policy.namespace)}
    return spec


def _labels(policy: PolicyRef, drift: ResourceDrift) -> dict[str, str]:
    ref = drift.resource
    labels = {
        LABEL_POLICY: label_value(policy.name),
        LABEL_KIND: label_value(ref.kind),
        LABEL_NAME: label_value(ref.name),
        LABEL_MANAGED_BY: "kubedrift",
    }
    if ref.namespace:
        labels[LABEL_NAMESPACE] = label_value(ref.namespace)
    return labels


@dataclass(frozen=True)
class ReportLedger:
    """A policy's DriftReports as listed at the start of a scan, by report name.

    Only reports in the policy's namespace owned by that very policy (ownerReference uid) are in it:
    anyone who may create DriftReports could forge one naming the policy (publish/ownership.py).
    """

    reports: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, policy: PolicyRef, items: Iterable[Mapping[str, Any]]) -> ReportLedger:
        uids = {(policy.namespace, policy.name): policy.uid}
        return cls({
            str(item["metadata"]["name"]): dict(item)
            for item in items
            if owner_policy(item, uids) == policy.id
        })

    def active(self) -> dict[str, ActiveDrift]:
        """The drift these reports say is active, by resource id, with its firstSeen (the earliest, should a
        resource have a report under an older name too)."""
        found: dict[str, ActiveDrift] = {}
        for name, report in self.reports.items():
            if (report.get("status") or {}).get("state") != ACTIVE:
                continue
            drift = _active_drift(report)
            if drift is None:
                log.warning("DriftReport %s is Active but unreadable (resource, severity, firstSeen); ignored", name)
                continue
            rid = str(report["spec"]["resourceId"])
            if rid not in found or drift.first_seen < found[rid].first_seen:
                found[rid] = drift
        return found

    def other_names(self, resource_id: str, name: str) -> list[str]:
        """The reports of `resource_id` under names other than `name` (an older release's naming)."""
        return sorted(other for other, report in self.reports.items()
                      if other != name and (report.get("spec") or {}).get("resourceId") == resource_id)


def _active_drift(report: Mapping[str, Any]) -> ActiveDrift | None:
    spec = report.get("spec") or {}
    resource = spec.get("resource") or {}
    if not isinstance(spec.get("resourceId"), str) or not isinstance(resource, dict):
        return None
    try:
        severity = Severity.parse(str(spec.get("severity") or ""))
    except ValueError:
        return None
    first_seen = parse_time(spec.get("firstSeen")) or parse_time(
        (report.get("metadata") or {}).get("creationTimestamp"))
    if first_seen is None:
        return None
    ref = ResourceRef(str(resource.get("apiVersion") or ""), str(resource.get("kind") or ""),
                      str(resource.get("namespace") or ""), str(resource.get("name") or ""))
    return ActiveDrift(ref, severity, first_seen)


class ReportPublisher:
    def __init__(self, client: KubeClient, retention_seconds: float = 24 * 3600.0) -> None:
        self._client = client
        self.retention_seconds = retention_seconds

    def _path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        return resource_path(GROUP, VERSION, REPORT_PLURAL, namespace, name, subresource)

    def ledger(self, policy: PolicyRef) -> ReportLedger:
        """This policy's reports (raises ApiError when they cannot be listed)."""
        selector = f"{LABEL_POLICY}={label_value(policy.name)}"
        body = self._client.get(self._path(policy.namespace), labelSelector=selector)
        return ReportLedger.of(policy, body.get("items") or [])

    def ledger_of(self, policy: PolicyRef, resource_ids: Iterable[str]) -> ReportLedger:
        """The reports of these resources only (one GET each): what an incremental scan needs."""
        found: dict[str, dict[str, Any]] = {}
        for rid in resource_ids:
            name = report_name(policy, rid)
            try:
                report = self._client.get(self._path(policy.namespace, name))
            except ApiError as exc:
                if exc.not_found:
                    continue
                raise
            if (report.get("spec") or {}).get("policy") == policy.name:
                found[name] = report
        return ReportLedger(found)

    def sync(self, outcome: ScanOutcome, ledger: ReportLedger) -> SyncResult:
        """Make the reports say what `outcome` decided; `ledger` is what they said before the scan
        (for an incremental outcome: the reports of its scope)."""
        result = SyncResult()
        if outcome.stalled:
            return result
        policy, now = outcome.policy, outcome.finished
        stamp = format_time(now)
        ending = set(outcome.resolved) | set(outcome.untracked)
        handled: set[str] = set()
        for rid, verdict in sorted(outcome.decided().items()):
            name = report_name(policy, rid)
            current = ledger.reports.get(name)
            stale = ledger.other_names(rid, name)
            handled.update([name, *stale])
            if not isinstance(verdict, Drifted) and current is None and stale:
                name, stale = stale[0], stale[1:]  # no new state to write: the old-named report serves
                current = ledger.reports[name]
            try:
                action = outcome.remediations.get(rid)
                remediation = action.to_json() if action is not None else None
                if isinstance(verdict, Drifted):
                    first_seen = format_time(outcome.active[rid].first_seen)
                    self._upsert(policy, verdict.drift, outcome.revision or "", stamp, first_seen, current,
                                 remediation)
                elif rid in ending and current is not None:
                    status = {"state": RESOLVED, "lastSeen": stamp, "resolvedAt": stamp,
                              "resolution": outcome.resolution(rid)}
                    self._write_status(policy, name, status | ({"remediation": remediation} if remediation else {}))
                elif current is not None and not _is_active(current):
                    self._expire(policy, name, current, now)
            except ApiError as exc:
                if not exc.not_found:
                    result.errors.append(f"DriftReport {name}: {exc}")
                continue
            for old in stale:  # one report per resource: the one written above replaces these
                try:
                    self._client.request("DELETE", self._path(policy.namespace, old))
                except ApiError as exc:
                    if not exc.not_found:
                        result.errors.append(f"DriftReport {old}: {exc}")
        for name, report in sorted(ledger.reports.items()):
            if name in handled or _is_active(report) or outcome.incremental:
                continue
            try:
                self._expire(policy, name, report, now)
            except ApiError as exc:
                if not exc.not_found:
                    result.errors.append(f"DriftReport {name}: {exc}")
        return result

    def _expire(self, policy: PolicyRef, name: str, report: Mapping[str, Any], now: datetime.datetime) -> None:
        """A Resolved report goes once the retention period has passed."""
        resolved_at = parse_time((report.get("status") or {}).get("resolvedAt"))
        if resolved_at is None or (now - resolved_at).total_seconds() >= self.retention_seconds:
            self._client.request("DELETE", self._path(policy.namespace, name))

    def _upsert(
        self,
        policy: PolicyRef,
        drift: ResourceDrift,
        revision: str,
        stamp: str,
        first_seen: str,
        current: dict[str, Any] | None,
        remediation: dict[str, Any] | None = None,
    ) -> None:
        name = report_name(policy, drift.id)
        active = current is not None and _is_active(current)
        spec = report_spec(policy, drift, revision, first_seen)
        if current is None:
            body = {
                "apiVersion": API_VERSION,
                "kind": "DriftReport",
                "metadata": {
                    "name": name,
                    "namespace": policy.namespace,
                    "labels": _labels(policy, drift),
                    "ownerReferences": [policy.owner_reference()] if policy.uid else [],
                },
                "spec": spec,
            }
            try:
                self._client.request("POST", self._path(policy.namespace), body=body)
            except ApiError as exc:
                if not exc.conflict:
                    raise
                self._replace_spec(policy, name, spec)  # created meanwhile (e.g. by a previous leader)
        elif current.get("spec") != spec:
            self._replace_spec(policy, name, spec)
        elif active and not _remediation_changed(current, remediation):
            return  # nothing changed: no write
        status: dict[str, Any] = {"state": ACTIVE, "lastSeen": stamp}
        if remediation is not None:
            status["remediation"] = remediation
        self._write_status(policy, name, status)

    def _replace_spec(self, policy: PolicyRef, name: str, spec: dict[str, Any]) -> None:
        self._client.request("PATCH", self._path(policy.namespace, name),
                             body=[{"op": "add", "path": "/spec", "value": spec}], content_type=JSON_PATCH)

    def _write_status(self, policy: PolicyRef, name: str, status: dict[str, Any]) -> None:
        self._client.request("PATCH", self._path(policy.namespace, name, "status"),
                             body=[{"op": "add", "path": "/status", "value": status}], content_type=JSON_PATCH)

    def delete_all(self, policy: PolicyRef) -> int:
        """Remove every report of a policy (on its deletion; ownerReferences do the same on a real cluster)."""
        deleted = 0
        for name in self.ledger(policy).reports:
            try:
                self._client.request("DELETE", self._path(policy.namespace, name))
                deleted += 1
            except ApiError as exc:
                if not exc.not_found:
                    raise
        return deleted


def _remediation_changed(report: Mapping[str, Any], remediation: Mapping[str, Any] | None) -> bool:
    """A new remediation result (the same answer again, at another time, is no news)."""
    if remediation is None:
        return False
    before = (report.get("status") or {}).get("remediation") or {}
    return {k: v for k, v in before.items() if k != "time"} != {k: v for k, v in remediation.items() if k != "time"}


def _is_active(report: Mapping[str, Any]) -> bool:
    return (report.get("status") or {}).get("state") == ACTIVE
