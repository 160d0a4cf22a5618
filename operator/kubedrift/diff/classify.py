"""Category, severity and score of differences (SPEC §2 table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubedrift.diff.keys import Component, ItemKey
from kubedrift.model import DEFAULT_SEVERITY, Category, Change, ResourceKey, Severity, SeverityOverride

CONTAINER_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})
SECURITY_FIELDS = frozenset(
    {
        "securityContext",
        "serviceAccountName",
        "serviceAccount",
        "automountServiceAccountToken",
        "hostNetwork",
        "hostPID",
        "hostIPC",
        "hostUsers",
        "hostPath",
        "privileged",
        "shareProcessNamespace",
    }
)
RBAC_FIELDS = {
    "Role": frozenset({"rules"}),
    "ClusterRole": frozenset({"rules", "aggregationRule"}),
    "RoleBinding": frozenset({"subjects", "roleRef"}),
    "ClusterRoleBinding": frozenset({"subjects", "roleRef"}),
}
SECRET_REFS = frozenset({"secretKeyRef", "secretRef", "secret", "imagePullSecrets"})
CONFIGMAP_REFS = frozenset({"configMapKeyRef", "configMapRef", "configMap"})
VOLUME_FIELDS = frozenset({"volumes", "volumeMounts", "volumeDevices", "volumeClaimTemplates"})
SEVERITY_BASE = {Severity.LOW: 20, Severity.MEDIUM: 45, Severity.HIGH: 70, Severity.CRITICAL: 85}
SEVERITY_WEIGHT = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 4, Severity.CRITICAL: 6}


def _keys_within(value: Any, depth: int = 4) -> set[str]:
    """Map keys in the top levels of a value (to see a secret volume or a secretKeyRef inside an item)."""
    found: set[str] = set()
    if depth == 0:
        return found
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                found.add(k)
            found |= _keys_within(v, depth - 1)
    elif isinstance(value, list):
        for v in value:
            found |= _keys_within(v, depth - 1)
    return found


def categorize(kind: str, path: Sequence[Component], desired: Any, live: Any) -> Category:
    names = [c for c in path if isinstance(c, str)]
    if not names:
        return Category.OTHER
    head = names[0]
    if kind == "Secret" and head in ("data", "stringData", "binaryData"):
        return Category.SECRET_CHANGE
    if kind == "ConfigMap" and head in ("data", "binaryData"):
        return Category.CONFIGURATION_CHANGE
    if head == "metadata":
        if "labels" in names[1:2]:
            return Category.LABEL_CHANGE
        if "annotations" in names[1:2]:
            return Category.ANNOTATION_CHANGE
        return Category.OTHER
    if names == ["spec", "replicas"]:
        return Category.SCALING
    inner = _keys_within(desired) | _keys_within(live)
    if head in RBAC_FIELDS.get(kind, ()) or SECURITY_FIELDS & (set(names) | inner):
        return Category.SECURITY_CHANGE
    if len(path) >= 2 and isinstance(path[-1], ItemKey) and path[-2] in CONTAINER_LISTS:
        # A whole container on one side only: it runs an image Git never approved (or lacks one it did).
        return Category.VERSION_CHANGE
    if SECRET_REFS & (set(names) | inner):
        return Category.SECRET_CHANGE
    if CONFIGMAP_REFS & (set(names) | inner):
        return Category.CONFIGMAP_CHANGE
    in_container = any(n in CONTAINER_LISTS for n in names)
    last = names[-1]
    if in_container and last == "image":
        return Category.VERSION_CHANGE
    if in_container and "resources" in names:
        return Category.RESOURCE_CHANGE
    if "ports" in names and (in_container or kind == "Service"):
        return Category.PORT_CHANGE
    if VOLUME_FIELDS & set(names):
        return Category.VOLUME_CHANGE
    if head == "spec" or "env" in names or "envFrom" in names:
        return Category.CONFIGURATION_CHANGE
    return Category.OTHER


def _scaling_severity(desired: Any, live: Any) -> Severity:
    if not isinstance(desired, int) or not isinstance(live, int) or isinstance(desired, bool):
        return Severity.HIGH
    if desired == 0 or live == 0:
        return Severity.HIGH if desired != live else Severity.MEDIUM
    return Severity.HIGH if abs(live - desired) / desired > 0.5 else Severity.MEDIUM


def default_severity(category: Category, desired: Any, live: Any) -> Severity:
    if category is Category.SCALING:
        return _scaling_severity(desired, live)
    return DEFAULT_SEVERITY[category]


def override_severity(change: Change, key: ResourceKey, overrides: Sequence[SeverityOverride]) -> Severity:
    """The first matching override wins; without one the change keeps its severity."""
    for rule in overrides:
        if (
            (rule.kind is None or rule.kind == key.kind)
            and (rule.category is None or rule.category is change.category)
            and (rule.namespace is None or rule.namespace == key.namespace)
        ):
            return rule.severity
    return change.severity


def score(changes: Sequence[Change], missing: bool = False) -> int:
    """0-100: the highest severity sets the base; more changes and more categories add to it."""
    if not changes:
        return 0
    ordered = sorted(changes, key=lambda c: c.severity, reverse=True)
    base = SEVERITY_BASE[ordered[0].severity]
    if missing:
        return min(100, base + 10)
    extra = min(10, sum(SEVERITY_WEIGHT[c.severity] for c in ordered[1:]))
    extra += min(5, 2 * (len({c.category for c in changes}) - 1))
    return min(100, base + extra)
