"""What is not compared: policy ignore rules (Argo CD compatible) and built-in controller noise."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

from kubedrift.diff.keys import MERGE_KEYS, Component
from kubedrift.diff.managed import ManagedEntry, last_writer, owned_leaves, resolve
from kubedrift.jq_sandbox import sandbox as jq_sandbox
from kubedrift.model import IgnoreRule, ResourceKey

IGNORE_ANNOTATION = "kubedrift.dev/ignore"
SCALERS = {("autoscaling", "HorizontalPodAutoscaler"), ("keda.sh", "ScaledObject")}
CA_BUNDLE_KINDS = frozenset(
    {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "CustomResourceDefinition", "APIService"}
)


def is_ignored_object(body: dict[str, Any]) -> bool:
    meta = body.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    return isinstance(annotations, dict) and str(annotations.get(IGNORE_ANNOTATION, "")).lower() == "true"


def rule_matches(rule: IgnoreRule, key: ResourceKey) -> bool:
    return (
        (rule.group is None or rule.group in ("*", key.group))
        and (rule.kind is None or rule.kind in ("*", key.kind))
        and (rule.namespace is None or rule.namespace in ("*", key.namespace))
        and (rule.name is None or rule.name in ("*", key.name))
    )


def pointer_components(pointer: str) -> list[str]:
    """RFC 6901: `/metadata/labels/app.kubernetes.io~1name` -> ["metadata", "labels", "app.kubernetes.io/name"]."""
    if not pointer:
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.split("/")[1:]]


def delete_path(obj: Any, path: Sequence[Any]) -> None:
    """Remove the value at `path` (str keys, list indices as int or digit strings, ItemKeys)."""
    if not path:
        return
    normalized: list[Any] = []
    node = obj
    for comp in path:
        if isinstance(node, list) and isinstance(comp, str) and comp.isdigit():
            comp = int(comp)
        normalized.append(comp)
        found = resolve(node, [comp])
        if found is None:
            return
        node = found[0][found[1]]
    found = resolve(obj, normalized)
    if found is not None:
        container, slot = found
        del container[slot]


def _delete_all(obj: Any, paths: list[list[Any]]) -> None:
    # Delete deeper paths and higher list indices first so earlier deletions don't shift later ones.
    for path in sorted(paths, key=lambda p: (len(p), [str(c).zfill(12) for c in p]), reverse=True):
        delete_path(obj, path)


def apply_rules(
    desired: dict[str, Any],
    live: dict[str, Any],
    key: ResourceKey,
    rules: Sequence[IgnoreRule],
    entries: Sequence[ManagedEntry],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Remove every ignored field from both sides (on copies; the inputs are left untouched)."""
    matching = [r for r in rules if rule_matches(r, key)]
    if not matching:
        return desired, live
    desired, live = copy.deepcopy(desired), copy.deepcopy(live)
    for rule in matching:
        for pointer in rule.json_pointers:
            parts = pointer_components(pointer)
            delete_path(desired, parts)
            delete_path(live, parts)
        for expression in rule.jq_path_expressions:
            desired_paths, live_paths = jq_sandbox().paths(expression, [desired, live])
            _delete_all(desired, desired_paths)
            _delete_all(live, live_paths)
        if rule.managed_fields_managers:
            managers = set(rule.managed_fields_managers)
            for entry in entries:
                if entry.manager in managers:
                    owned = list(owned_leaves(entry.tree))
                    _delete_all(desired, [list(p) for p in owned])
                    _delete_all(live, [list(p) for p in owned])
    return desired, live


def scale_targets(objects: Sequence[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(namespace, kind, name) of workloads whose replicas an autoscaler owns."""
    targets = set()
    for body in objects:
        group = str(body.get("apiVersion", "")).rpartition("/")[0]
        if (group, body.get("kind")) not in SCALERS:
            continue
        spec = body.get("spec") or {}
        ref = spec.get("scaleTargetRef") if isinstance(spec, dict) else None
        meta = body.get("metadata") or {}
        if isinstance(ref, dict) and ref.get("name"):
            targets.add((str(meta.get("namespace") or ""), str(ref.get("kind") or "Deployment"), str(ref["name"])))
    return targets


def _ca_bundle_paths(obj: Any, prefix: tuple[Component, ...] = ()) -> Iterator[tuple[Component, ...]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k == "caBundle":
                yield (*prefix, k)
            elif isinstance(v, list) and k in MERGE_KEYS:
                key_of = MERGE_KEYS[k]
                for item in v:
                    item_key = key_of(item)
                    if item_key is not None:
                        yield from _ca_bundle_paths(item, (*prefix, k, item_key))
            elif isinstance(v, dict):
                yield from _ca_bundle_paths(v, (*prefix, k))


def controller_noise(
    key: ResourceKey,
    desired: dict[str, Any],
    live: dict[str, Any],
    entries: Sequence[ManagedEntry],
    hand_edit_managers: Sequence[str],
    scaled: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Drop fields that controllers own by design, unless a person is the one who last wrote them.

    - replicas of a workload an HPA/KEDA ScaledObject targets;
    - `rules` of an aggregated ClusterRole (filled in by the aggregation controller);
    - `caBundle` of webhooks, CRD conversion and APIServices (injected by cert-manager & co).
    """
    paths: list[tuple[Component, ...]] = []
    if scaled:
        paths.append(("spec", "replicas"))
    if key.kind == "ClusterRole" and ("aggregationRule" in desired or "aggregationRule" in live):
        paths.append(("rules",))
    for path in _ca_bundle_paths(live) if key.kind in CA_BUNDLE_KINDS else ():
        writer = last_writer(entries, path)
        if writer is None or writer.manager not in hand_edit_managers:
            paths.append(path)
    present = [p for p in paths if resolve(desired, p) is not None or resolve(live, p) is not None]
    if not present:
        return desired, live
    desired, live = copy.deepcopy(desired), copy.deepcopy(live)
    for path in present:
        delete_path(desired, path)
        delete_path(live, path)
    return desired, live
