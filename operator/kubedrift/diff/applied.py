"""The `kubectl.kubernetes.io/last-applied-configuration` annotation as evidence of removals.

Client-side `kubectl apply` (and Argo CD's default sync) record there what they applied last; a
field in it that Git no longer declares and that is still live is what the next apply would
prune: drift. Hot path (most live objects carry the annotation): the walk skips every part of the
annotation equal to Git's, so an unchanged manifest costs one comparison per top-level field.
"""

from __future__ import annotations

from typing import Any

import orjson

from kubedrift.diff.keys import Component, ListKeys, key_list

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
MAX_DEPTH = 64
# Payloads compared as whole maps already (a Secret's values are never read from the annotation),
# what the identity or the server owns.
_SKIPPED_TOP = frozenset({"apiVersion", "kind", "status", "data", "stringData", "binaryData"})
_SKIPPED_META = frozenset({"namespace", "name", "creationTimestamp", "uid", "resourceVersion", "generation"})
_EMPTY: tuple[Any, ...] = (None, {}, [])


def last_applied(live_body: dict[str, Any]) -> dict[str, Any] | None:
    """The last client-side apply, or None without a readable annotation."""
    meta = live_body.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    text = annotations.get(LAST_APPLIED) if isinstance(annotations, dict) else None
    if not isinstance(text, str):
        return None
    try:
        applied = orjson.loads(text)  # read for nearly every live object: orjson is ~3x faster than json
    except (orjson.JSONDecodeError, RecursionError):
        return None
    return applied if isinstance(applied, dict) else None


def _leaves(applied: Any, field: str, keys: ListKeys, path: tuple[Component, ...], depth: int,
            out: list[tuple[Component, ...]]) -> None:
    """Every field applied below `path` (Git declares none of it): map fields to their leaves, list
    items whole."""
    if isinstance(applied, dict) and applied and depth < MAX_DEPTH:
        for key, value in applied.items():
            if isinstance(key, str) and value not in _EMPTY:
                _leaves(value, key, keys, (*path, key), depth + 1, out)
        return
    if isinstance(applied, list):
        keyed = key_list(field, applied, keys)
        if keyed is not None:
            out.extend((*path, item_key) for item_key in keyed)
            return
    out.append(path)


def _undeclared(applied: Any, desired: Any, field: str, keys: ListKeys, path: tuple[Component, ...],
                depth: int, out: list[tuple[Component, ...]], skip: frozenset[str] = frozenset()) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(applied, dict) and isinstance(desired, dict):
        for key, value in applied.items():
            if key in skip or not isinstance(key, str) or value in _EMPTY:
                continue  # an empty value applied (`resources: {}`) is no field of its own to prune
            declared = desired.get(key)
            if declared is None:
                _leaves(value, key, keys, (*path, key), depth + 1, out)
            elif value != declared:
                inner = _SKIPPED_META if depth == 0 and key == "metadata" else frozenset()
                _undeclared(value, declared, key, keys, (*path, key), depth + 1, out, inner)
    elif isinstance(applied, list) and isinstance(desired, list):
        keyed_applied = key_list(field, applied, keys)
        keyed_desired = key_list(field, desired, keys) if keyed_applied is not None else None
        if keyed_applied is None or keyed_desired is None:
            return  # a plain list: Git declares it whole, compared already
        for item_key, item in keyed_applied.items():
            declared_item = keyed_desired.get(item_key)
            if declared_item is None:
                out.append((*path, item_key))
            elif item != declared_item:
                _undeclared(item, declared_item, field, keys, (*path, item_key), depth + 1, out)


def applied_not_declared(live_body: dict[str, Any], desired: dict[str, Any], keys: ListKeys) -> list[
    tuple[Component, ...]
]:
    """Paths of fields the last client-side apply set that Git (`desired`, normalized) no longer declares."""
    applied = last_applied(live_body)
    if applied is None:
        return []
    out: list[tuple[Component, ...]] = []
    _undeclared(applied, desired, "", keys, (), 0, out, _SKIPPED_TOP)
    return out
