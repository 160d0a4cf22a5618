"""Building ScanResults by hand for tests of the stages after diff (store, metrics, API)."""

from __future__ import annotations

from kubedrift.model import (
    Category,
    Change,
    DriftState,
    ResourceDrift,
    ResourceKey,
    ResourceRef,
    ScanResult,
    Severity,
)

_GROUPS = {"Deployment": "apps", "StatefulSet": "apps"}


def drift(
    kind: str,
    namespace: str,
    name: str,
    *,
    severity: Severity = Severity.HIGH,
    path: str = "spec.replicas",
    desired: object = 2,
    live: object = 5,
    category: Category = Category.SCALING,
    missing: bool = False,
) -> ResourceDrift:
    group = _GROUPS.get(kind, "")
    api_version = f"{group}/v1" if group else "v1"
    changes = [] if missing else [Change(path, desired, live, category, severity, changed_by="kubectl-scale")]
    if missing:
        changes = [Change("", None, None, Category.MISSING, severity)]
    return ResourceDrift(
        resource=ResourceRef(api_version, kind, namespace, name),
        key=ResourceKey(group, kind, namespace, name),
        state=DriftState.MISSING if missing else DriftState.DRIFTED,
        severity=severity,
        score=int(severity) * 20,
        changes=changes,
    )


def scan(*drifts: ResourceDrift, resources: int = 10) -> ScanResult:
    return ScanResult(resources=resources, drifts=sorted(drifts, key=lambda d: d.id))
