"""One object, and a whole set of objects: normalize -> project -> deepdiff -> classify."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from kubedrift.diff.classify import categorize, default_severity, override_severity, score
from kubedrift.diff.ignore import apply_rules, controller_noise, is_ignored_object, scale_targets
from kubedrift.diff.keys import Component, ItemKey, render_path, unkey
from kubedrift.diff.managed import ManagedEntry, last_writer, owned_leaves, parse_managed_fields, value_at
from kubedrift.diff.normalize import normalize
from kubedrift.diff.project import ABSENT, project_object
from kubedrift.jq_sandbox import JqError
from kubedrift.model import (
    Category,
    Change,
    DiffSettings,
    DriftState,
    DriftView,
    KubeObject,
    LoadError,
    ResourceDrift,
    ResourceKey,
    ResourceRef,
    ScanResult,
    Severity,
)

# Kinds that moved API group: a manifest still written for the old group is the same object live.
GROUP_ALIASES = {
    ("extensions", "Deployment"): "apps",
    ("extensions", "DaemonSet"): "apps",
    ("extensions", "ReplicaSet"): "apps",
    ("extensions", "Ingress"): "networking.k8s.io",
    ("extensions", "NetworkPolicy"): "networking.k8s.io",
    ("extensions", "PodSecurityPolicy"): "policy",
}

MISSING_PATH = ""


def identity(obj: KubeObject) -> ResourceKey:
    key = obj.key
    alias = GROUP_ALIASES.get((key.group, key.kind))
    return ResourceKey(alias, key.kind, key.namespace, key.name) if alias else key


def _get_in(tree: Any, path: Sequence[Component]) -> Any:
    """The value at `path` of a projected tree; keyed items are found in keyed maps and plain lists."""
    node = tree
    for comp in path:
        if isinstance(node, dict):
            node = node.get(comp, ABSENT)
        elif isinstance(node, list) and isinstance(comp, ItemKey):
            node = next((item for item in node if comp.matches(item)), ABSENT)
        elif isinstance(node, list) and isinstance(comp, int) and 0 <= comp < len(node):
            node = node[comp]
        else:
            return ABSENT
        if node is ABSENT:
            return ABSENT
    return node


def _differing_parts(desired: Any, live: Any, prefix: tuple[Component, ...] = ()) -> Iterator[
    tuple[tuple[Component, ...], Any, Any]
]:
    """Smallest map entries that differ, found by equality: deepdiff then only sees what changed."""
    if not (isinstance(desired, dict) and isinstance(live, dict)):
        yield prefix, desired, live
        return
    for key in desired.keys() | live.keys():
        d_value, l_value = desired.get(key, ABSENT), live.get(key, ABSENT)
        if d_value == l_value:
            continue
        if isinstance(d_value, dict) and isinstance(l_value, dict):
            yield from _differing_parts(d_value, l_value, (*prefix, key))
        else:
            yield (
                prefix,
                {} if d_value is ABSENT else {key: d_value},
                {} if l_value is ABSENT else {key: l_value},
            )


def _differences(desired: Any, live: Any) -> dict[tuple[Component, ...], tuple[Any, Any]]:
    """Paths where the projected trees differ; a difference inside a plain list is the whole list."""
    from deepdiff import DeepDiff  # imported on first drift: clean scans never pay for it

    found: dict[tuple[Component, ...], tuple[Any, Any]] = {}
    for prefix, d_part, l_part in _differing_parts(desired, live):
        for levels in DeepDiff(d_part, l_part, view="tree").values():
            for level in levels:
                comps: list[Component] = [*prefix, *level.path(output_format="list")]
                cut = next((i for i, c in enumerate(comps) if isinstance(c, int)), None)
                path = tuple(comps if cut is None else comps[:cut])
                if path not in found:
                    found[path] = (_get_in(desired, path), _get_in(live, path))
    return found


def _declared(desired: Any, path: Sequence[Component]) -> bool:
    return _get_in(desired, path) is not ABSENT


def _git_applier(entries: Sequence[ManagedEntry], desired: Any) -> ManagedEntry | None:
    """The server-side-apply manager that applies Git: the Apply entry owning most declared fields.

    An Apply entry owns exactly what its manager last applied (no defaults), so a field it owns that
    Git no longer declares was removed from Git and is still live.
    """
    best, best_count = None, 0
    for entry in entries:
        if entry.operation != "Apply" or entry.subresource:
            continue
        count = sum(1 for path in owned_leaves(entry.tree) if _declared(desired, path))
        if count > best_count:
            best, best_count = entry, count
    return best


def _out_of_git(
    desired: Any, live: dict[str, Any], entries: Sequence[ManagedEntry], managers: Sequence[str]
) -> dict[tuple[Component, ...], tuple[Any, Any]]:
    """Live fields Git does not declare that a person put there (a hand-editing manager such as
    kubectl edit/patch/set) or that Git's server-side applier still owns after Git dropped them."""
    applier = _git_applier(entries, desired)
    found: dict[tuple[Component, ...], tuple[Any, Any]] = {}
    for entry in entries:
        if entry is not applier and (entry.manager not in managers or entry.subresource == "status"):
            continue
        for owned in owned_leaves(entry.tree):
            # a member of a set-like list (`v:` key) is reported as the whole list
            owned = tuple(itertools.takewhile(lambda c: not isinstance(c, tuple), owned))
            node = desired
            for i, comp in enumerate(owned):
                if isinstance(node, dict) and comp in node:
                    node = node[comp]
                    continue
                if isinstance(node, dict):  # the first component Git does not declare
                    # A list item is reported whole; a map field at the owned leaf, not the whole map.
                    item_at = next((j for j in range(i, len(owned)) if isinstance(owned[j], ItemKey)), None)
                    path = tuple(owned if item_at is None else owned[: item_at + 1])
                    value = value_at(live, path)
                    if value is not None and path not in found:
                        found[path] = (ABSENT, value)
                break  # a plain list or a scalar: declared as a whole, compared already
    return found


def _missing(desired: KubeObject, ref: ResourceRef, key: ResourceKey, settings: DiffSettings) -> ResourceDrift:
    change = Change(MISSING_PATH, "present", "absent", Category.MISSING, default_severity(Category.MISSING, 0, 0))
    change.severity = override_severity(change, key, settings.severity_overrides)
    view = DriftView(normalize(desired.body), None)
    return ResourceDrift(ref, key, DriftState.MISSING, change.severity, score([change], missing=True), [change], view)


def _with_values(tree: Any, values: dict[tuple[Component, ...], tuple[Any, Any]]) -> Any:
    """`tree` with the live value of each path set (copied along the path: `tree` is shared)."""

    def put(node: Any, path: tuple[Component, ...], value: Any) -> Any:
        if not path:
            return value
        out = dict(node) if isinstance(node, dict) else {}
        out[path[0]] = put(out.get(path[0]), path[1:], value)
        return out

    for path, (_, live) in values.items():
        tree = put(tree, path, live)
    return tree


def _display(value: Any) -> Any:
    return None if value is ABSENT else unkey(value)


def compare_object(
    desired: KubeObject,
    live: KubeObject | None,
    settings: DiffSettings,
    *,
    autoscaled: bool = False,
    key: ResourceKey | None = None,
) -> ResourceDrift | None:
    """The drift of one object, or None when live matches what Git declares."""
    key = key or identity(desired)
    ref = ResourceRef(desired.api_version, key.kind, key.namespace, key.name)
    if live is None:
        return _missing(desired, ref, key, settings)

    entries = parse_managed_fields(live.body)
    d_norm, l_norm = normalize(desired.body), normalize(live.body)
    d_norm, l_norm = controller_noise(key, d_norm, l_norm, entries, settings.hand_edit_managers, autoscaled)
    d_norm, l_norm = apply_rules(d_norm, l_norm, key, settings.ignore_rules, entries)
    p_desired, p_live = project_object(key.kind, d_norm, l_norm)

    found = _differences(p_desired, p_live) if p_desired != p_live else {}
    hand_added = _out_of_git(p_desired, l_norm, entries, settings.hand_edit_managers)
    for path, values in hand_added.items():
        found.setdefault(path, values)
    if not found:
        return None

    changes = []
    for path, (d_value, l_value) in found.items():
        d_show, l_show = _display(d_value), _display(l_value)
        category = categorize(key.kind, path, d_show, l_show)
        writer = last_writer(entries, path)
        change = Change(
            path=render_path(path),
            desired=d_show,
            live=l_show,
            category=category,
            severity=default_severity(category, d_show, l_show),
            changed_by=writer.manager if writer else None,
            changed_at=writer.time if writer else None,
        )
        change.severity = override_severity(change, key, settings.severity_overrides)
        changes.append(change)
    changes.sort(key=lambda c: c.path)
    severity = max((c.severity for c in changes), default=Severity.LOW)
    view = DriftView(unkey(p_desired), unkey(_with_values(p_live, hand_added)))
    return ResourceDrift(ref, key, DriftState.DRIFTED, severity, score(changes), changes, view)


def _selected(key: ResourceKey, settings: DiffSettings) -> bool:
    if settings.include_kinds and key.kind not in settings.include_kinds:
        return False
    return key.kind not in settings.exclude_kinds


def compare_objects(
    desired: Sequence[KubeObject],
    live: Sequence[KubeObject],
    settings: DiffSettings,
) -> ScanResult:
    """Compare every desired object with its live twin (matched by group/kind/namespace/name).

    Inputs are never mutated (callers may share them between scans). Live objects Git does not
    declare are ignored. Desired objects carry their namespace already
    (source/ fills in the default). Drifts come sorted by severity (highest first), then resource id.
    """
    live_by_key = {identity(obj): obj for obj in live}
    autoscaled = scale_targets([o.body for o in live] + [o.body for o in desired])
    result = ScanResult(resources=0)
    for obj in desired:
        key = identity(obj)
        twin = live_by_key.get(key)
        if not _selected(key, settings) or is_ignored_object(obj.body):
            continue
        if twin is not None and is_ignored_object(twin.body):
            continue
        result.resources += 1
        try:
            drift = compare_object(obj, twin, settings, autoscaled=(key.namespace, key.kind, key.name) in autoscaled)
        except JqError as exc:  # an ignore rule's expression overran its limits: say which
            result.errors.append(LoadError(obj.source or key.id, f"{key.id}: cannot compare: {exc}"))
            continue
        except Exception as exc:  # one object that cannot be compared never stops the scan
            result.errors.append(LoadError(obj.source or key.id, f"{key.id}: cannot compare: {type(exc).__name__}"))
            continue
        if drift is not None:
            result.drifts.append(drift)
    result.drifts.sort(key=lambda d: (-d.severity, d.id))
    return result


__all__ = ["ItemKey", "compare_object", "compare_objects", "identity"]
