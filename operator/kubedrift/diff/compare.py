"""One object, and a whole set of objects: normalize -> project -> deepdiff -> classify."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from kubedrift.diff.applied import applied_not_declared
from kubedrift.diff.bookkeeping import is_bookkeeping
from kubedrift.diff.classify import categorize, default_severity, override_severity, score
from kubedrift.diff.convert import same_version
from kubedrift.diff.defaults import is_server_default
from kubedrift.diff.ignore import apply_rules, controller_noise, is_ignored_object, scale_targets
from kubedrift.diff.keys import MERGE_KEYS, Component, ItemKey, ListKeys, key_list, render_path, unkey
from kubedrift.diff.managed import ManagedEntry, Tree, last_writer, owned_leaves, parse_managed_fields, value_at
from kubedrift.diff.normalize import normalize
from kubedrift.diff.project import ABSENT, project_object
from kubedrift.diff.schema import CrdFacts, crd_facts
from kubedrift.jq_sandbox import JqError
from kubedrift.kinds import BUILTIN_GROUPS
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

log = logging.getLogger(__name__)

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


def identity(obj: KubeObject, cluster_scoped: Collection[tuple[str, str]] = ()) -> ResourceKey:
    """Group/kind/namespace/name; a kind known to be cluster-scoped has no namespace, whatever Git wrote."""
    key = obj.key
    alias = GROUP_ALIASES.get((key.group, key.kind))
    if alias:
        key = ResourceKey(alias, key.kind, key.namespace, key.name)
    if key.namespace and (key.group, key.kind) in cluster_scoped:
        key = ResourceKey(key.group, key.kind, "", key.name)
    return key


def cluster_scoped_kinds(desired: Sequence[KubeObject], live: Sequence[KubeObject], crds: CrdFacts) -> set[
    tuple[str, str]
]:
    """Custom kinds that are cluster-scoped: so says their CRD, or none of their live objects has a namespace.

    The manifest loader knows built-in kinds (and, with a cluster, discovery knows all); this serves
    custom kinds without a cluster, so that a ClusterIssuer is never looked for in `default`.
    """
    namespaced_live: dict[tuple[str, str], bool] = {}
    for obj in live:
        group = str(obj.body.get("apiVersion") or "").rpartition("/")[0]
        if group in BUILTIN_GROUPS:
            continue
        gk = (group, obj.kind)
        namespaced_live[gk] = namespaced_live.get(gk, False) or bool(obj.namespace)
    found = {gk for gk, namespaced in namespaced_live.items() if not namespaced}
    found |= crds.cluster_scoped
    return found - crds.namespaced


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


def _stale_noise(path: tuple[Component, ...], value: Any) -> bool:
    """A field Git's applier wrote that is no evidence of a removal from Git: a GitOps tool's own
    bookkeeping label, or a value the server would put there anyway (a port's protocol TCP)."""
    if is_bookkeeping(path) or value is None:
        return True
    if isinstance(value, (dict, list)) and not value:
        return True
    holder = next((c for c in reversed(path[:-1]) if isinstance(c, str)), "")
    return isinstance(path[-1], str) and is_server_default(holder, path[-1], value)


def _out_of_git(
    desired: Any,
    live: dict[str, Any],
    entries: Sequence[ManagedEntry],
    managers: Sequence[str],
    list_keys: ListKeys = MERGE_KEYS,
) -> dict[tuple[Component, ...], tuple[Any, Any]]:
    """Live fields Git does not declare that a person put there (a hand-editing manager such as
    kubectl edit/patch/set, or a person's `kubectl apply --server-side`), or that Git's
    server-side applier still owns after Git dropped them."""
    applier = _git_applier(entries, desired)
    evidence: list[tuple[Tree, bool]] = []  # (field set, whether it is what Git applied)
    for entry in entries:
        if entry is applier:
            evidence.append((entry.tree, True))
        elif entry.manager in managers and entry.subresource != "status":
            evidence.append((entry.tree, False))
    found: dict[tuple[Component, ...], tuple[Any, Any]] = {}
    for tree, applied_by_git in evidence:
        for owned in owned_leaves(tree):
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
                    if value is None or path in found or (applied_by_git and _stale_noise(path, value)):
                        break
                    found[path] = (ABSENT, value)
                break  # a plain list or a scalar: declared as a whole, compared already
            else:
                for path, value in _undeclared_items(owned, node, live, list_keys):
                    found.setdefault(path, (ABSENT, value))
    return found


def _undeclared_items(
    owned: tuple[Component, ...], declared: Any, live: dict[str, Any], list_keys: ListKeys
) -> Iterator[tuple[tuple[Component, ...], Any]]:
    """Items of a keyed list owned as a whole (an atomic list, e.g. HPA `metrics`) that Git lacks:
    whoever owns the list put them there, Git's applier before Git dropped them or a person."""
    if not owned or not isinstance(owned[-1], str) or not isinstance(declared, dict):
        return
    if not declared or not all(isinstance(k, ItemKey) for k in declared):
        return
    live_list = value_at(live, owned)
    keyed = key_list(owned[-1], live_list, list_keys) if isinstance(live_list, list) else None
    for item_key, item in (keyed or {}).items():
        if item_key not in declared:
            yield (*owned, item_key), item


def _missing(desired: KubeObject, ref: ResourceRef, key: ResourceKey, settings: DiffSettings) -> ResourceDrift:
    change = Change(MISSING_PATH, "present", "absent", Category.MISSING, default_severity(Category.MISSING, 0, 0))
    change = replace(change, severity=override_severity(change, key, settings.severity_overrides))
    view = DriftView(unkey(normalize(desired.body)), None)
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
    crds: CrdFacts | None = None,
) -> ResourceDrift | None:
    """The drift of one object, or None when live matches what Git declares.

    `crds` tells the list keys of custom kinds (x-kubernetes-list-map-keys).
    """
    key = key or identity(desired)
    ref = ResourceRef(desired.api_version, key.kind, key.namespace, key.name)
    if live is None:
        return _missing(desired, ref, key, settings)

    d_body, l_body = desired.body, live.body
    if d_body.get("apiVersion") != l_body.get("apiVersion"):
        d_body, l_body = same_version(d_body, l_body)
    entries = parse_managed_fields(l_body)
    d_norm, l_norm = normalize(d_body), normalize(l_body)
    d_norm, l_norm = controller_noise(key, d_norm, l_norm, entries, settings.hand_edit_managers, autoscaled)
    d_norm, l_norm = apply_rules(d_norm, l_norm, key, settings.ignore_rules, entries)
    projector = (crds or CrdFacts()).projector(key.group, key.kind)
    list_keys = projector.list_keys
    p_desired, p_live = project_object(key.kind, d_norm, l_norm, projector)

    found = _differences(p_desired, p_live) if p_desired != p_live else {}
    hand_added = _out_of_git(p_desired, l_norm, entries, settings.hand_edit_managers, list_keys)
    # Removed from Git under client-side apply: still in the last-applied-configuration, still live.
    for path in applied_not_declared(l_body, d_norm, list_keys):
        value = value_at(l_norm, path)
        if not _stale_noise(path, value):
            hand_added.setdefault(path, (ABSENT, value))
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
        changes.append(replace(change, severity=override_severity(change, key, settings.severity_overrides)))
    changes.sort(key=lambda c: c.path)
    severity = max((c.severity for c in changes), default=Severity.LOW)
    view = DriftView(unkey(p_desired), unkey(_with_values(p_live, hand_added)))
    drift = ResourceDrift(ref, key, DriftState.DRIFTED, severity, score(changes), changes, view)
    # Drift age counts from the earliest attributed change (RFC 3339 UTC stamps sort as text).
    drift.since = min((c.changed_at for c in changes if c.changed_at), default=None)
    return drift


def _selected(key: ResourceKey, settings: DiffSettings) -> bool:
    if settings.include_kinds and key.kind not in settings.include_kinds:
        return False
    return key.kind not in settings.exclude_kinds


def compare_objects(
    desired: Sequence[KubeObject],
    live: Sequence[KubeObject],
    settings: DiffSettings,
    crds: Iterable[dict[str, Any]] = (),
) -> ScanResult:
    """Compare every desired object with its live twin (matched by group/kind/namespace/name).

    Inputs are never mutated (callers may share them between scans). Live objects Git does not
    declare are ignored. Desired objects carry their namespace already
    (source/ fills in the default); a custom kind found cluster-scoped (by its CRD, or by live
    objects without namespace) drops it. CustomResourceDefinitions among the objects and in `crds`
    (the cluster's) tell custom kinds' scope and list keys.
    Drifts come sorted by severity (highest first), then resource id.
    """
    facts = crd_facts(itertools.chain(crds, (o.body for o in desired), (o.body for o in live)))
    cluster_scoped = cluster_scoped_kinds(desired, live, facts)
    live_by_key = {identity(obj, cluster_scoped): obj for obj in live}
    autoscaled = scale_targets([o.body for o in live] + [o.body for o in desired])
    result = ScanResult(resources=0)
    for obj in desired:
        key = identity(obj, cluster_scoped)
        twin = live_by_key.get(key)
        if not _selected(key, settings) or is_ignored_object(obj.body):
            continue
        if twin is not None and is_ignored_object(twin.body):
            continue
        result.resources += 1
        result.compared.add(key.id)
        try:
            drift = compare_object(obj, twin, settings, autoscaled=(key.namespace, key.kind, key.name) in autoscaled,
                                   key=key, crds=facts)
        except JqError as exc:  # an ignore rule's expression overran its limits: say which
            message = f"{key.id}: cannot compare: {exc}"
            result.errors.append(LoadError(obj.source or key.id, message))
            result.failed[key.id] = message
            continue
        except Exception as exc:  # one object that cannot be compared never stops the scan
            message = f"{key.id}: cannot compare: {type(exc).__name__}"
            log.debug("cannot compare %s", key.id, exc_info=True)
            result.errors.append(LoadError(obj.source or key.id, message))
            result.failed[key.id] = message
            continue
        if drift is not None:
            result.drifts.append(drift)
    result.drifts.sort(key=lambda d: (-d.severity, d.id))
    return result


__all__ = ["ItemKey", "compare_object", "compare_objects", "identity"]
