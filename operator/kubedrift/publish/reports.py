"""DriftReport custom resources: one per drifted object, in the policy's namespace, owned by it.

Reports are rewritten only when their content changes (no churn on repeated scans), go
Active -> Resolved when the drift goes, and are deleted after the retention period or with
the policy. Changes are copied from the diff stage, which already hides Secret values.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubedrift.bounded import MAX_CHANGES, bounded_changes
from kubedrift.cluster.client import JSON_PATCH, ApiError, KubeClient, resource_path
from kubedrift.model import DriftState, ResourceDrift
from kubedrift.policy import GROUP, VERSION

log = logging.getLogger(__name__)

PLURAL = "driftreports"
API_VERSION = f"{GROUP}/{VERSION}"
LABEL_POLICY = "kubedrift.dev/policy"
LABEL_KIND = "kubedrift.dev/kind"
LABEL_NAMESPACE = "kubedrift.dev/namespace"
LABEL_NAME = "kubedrift.dev/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
ACTIVE = "Active"
RESOLVED = "Resolved"


@dataclass(frozen=True)
class PolicyRef:
    """The DriftPolicy a scan ran for (owner of its reports, subject of its events)."""

    namespace: str
    name: str
    uid: str = ""

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def owner_reference(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": "DriftPolicy", "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": False}


@dataclass
class SyncResult:
    detected: list[ResourceDrift] = field(default_factory=list)
    """Drifts that became active in this scan (new, or back after being resolved)."""
    resolved: list[str] = field(default_factory=list)
    """Resource ids whose drift went away in this scan."""
    written: int = 0
    deleted: int = 0
    errors: list[str] = field(default_factory=list)


_LABEL_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_NAME_BAD = re.compile(r"[^a-z0-9-]+")


def label_value(text: str) -> str:
    """A valid label value (<= 63 chars, alphanumeric at both ends); long ones end in a hash."""
    value = _LABEL_BAD.sub("-", text).strip("-._")
    if len(value) > 63:
        value = value[:54].rstrip("-._") + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return value


def report_name(policy: str, resource_id: str) -> str:
    """Deterministic: `<policy>-<kind>-<namespace>-<name>-<hash8>`, a valid DNS subdomain."""
    kind, namespace, name = [*resource_id.split(":", 2), "", ""][:3]
    readable = "-".join(p for p in (policy, kind, namespace or "cluster", name) if p)
    readable = _NAME_BAD.sub("-", readable.lower()).strip("-")[:200].rstrip("-")
    digest = hashlib.sha256(f"{policy}\0{resource_id}".encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


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
    return {
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


def _parse_time(text: Any) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def format_time(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ReportPublisher:
    def __init__(self, client: KubeClient, retention_seconds: float = 24 * 3600.0) -> None:
        self._client = client
        self.retention_seconds = retention_seconds

    def _path(self, namespace: str, name: str | None = None, subresource: str | None = None) -> str:
        return resource_path(GROUP, VERSION, PLURAL, namespace, name, subresource)

    def existing(self, policy: PolicyRef) -> dict[str, dict[str, Any]]:
        """This policy's reports by name."""
        selector = f"{LABEL_POLICY}={label_value(policy.name)}"
        body = self._client.get(self._path(policy.namespace), labelSelector=selector)
        return {
            item["metadata"]["name"]: item
            for item in body.get("items") or []
            if (item.get("spec") or {}).get("policy") == policy.name
        }

    def sync(
        self,
        policy: PolicyRef,
        drifts: Sequence[ResourceDrift],
        revision: str,
        now: datetime.datetime,
        *,
        settled: Iterable[str] = (),
        complete: bool = True,
    ) -> SyncResult:
        """Make the reports match this scan's drifts.

        A report whose drift is gone resolves only when the scan could tell: its resource id is in
        `settled` (compared without drift), or the scan was `complete` (no unread files or kinds).
        """
        result = SyncResult()
        stamp = format_time(now)
        try:
            existing = self.existing(policy)
        except ApiError as exc:
            result.errors.append(f"cannot list DriftReports: {exc}")
            return result
        settled_ids = set(settled)
        wanted: set[str] = set()
        for drift in drifts:
            name = report_name(policy.name, drift.id)
            wanted.add(name)
            try:
                self._upsert(policy, drift, revision, stamp, existing.get(name), result)
            except ApiError as exc:
                result.errors.append(f"DriftReport {name}: {exc}")
        for name, report in sorted(existing.items()):
            if name in wanted:
                continue
            status = report.get("status") or {}
            resource_id = str((report.get("spec") or {}).get("resourceId", ""))
            try:
                if status.get("state") != RESOLVED:
                    if complete or resource_id in settled_ids:
                        self._write_status(policy, name, {"state": RESOLVED, "lastSeen": stamp, "resolvedAt": stamp})
                        result.resolved.append(resource_id)
                        result.written += 1
                else:
                    resolved_at = _parse_time(status.get("resolvedAt"))
                    if resolved_at is None or (now - resolved_at).total_seconds() >= self.retention_seconds:
                        self._client.request("DELETE", self._path(policy.namespace, name))
                        result.deleted += 1
            except ApiError as exc:
                if not exc.not_found:
                    result.errors.append(f"DriftReport {name}: {exc}")
        return result

    def _upsert(
        self,
        policy: PolicyRef,
        drift: ResourceDrift,
        revision: str,
        stamp: str,
        current: dict[str, Any] | None,
        result: SyncResult,
    ) -> None:
        name = report_name(policy.name, drift.id)
        status = (current or {}).get("status") or {}
        active = current is not None and status.get("state") == ACTIVE
        first_seen = str((current or {}).get("spec", {}).get("firstSeen") or stamp) if active else stamp
        since = drift.since_time()
        if since is not None:  # drift age counts from the earliest attributed change (SPEC §2)
            first_seen = min(first_seen, format_time(since))
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
        else:
            if active:
                return  # nothing changed: no write
        self._write_status(policy, name, {"state": ACTIVE, "lastSeen": stamp})
        result.written += 1
        if not active:
            result.detected.append(drift)

    def _replace_spec(self, policy: PolicyRef, name: str, spec: dict[str, Any]) -> None:
        self._client.request("PATCH", self._path(policy.namespace, name),
                             body=[{"op": "add", "path": "/spec", "value": spec}], content_type=JSON_PATCH)

    def _write_status(self, policy: PolicyRef, name: str, status: dict[str, Any]) -> None:
        self._client.request("PATCH", self._path(policy.namespace, name, "status"),
                             body=[{"op": "add", "path": "/status", "value": status}], content_type=JSON_PATCH)

    def delete_all(self, policy: PolicyRef) -> int:
        """Remove every report of a policy (on its deletion; ownerReferences do the same on a real cluster)."""
        deleted = 0
        for name in self.existing(policy):
            try:
                self._client.request("DELETE", self._path(policy.namespace, name))
                deleted += 1
            except ApiError as exc:
                if not exc.not_found:
                    raise
        return deleted
