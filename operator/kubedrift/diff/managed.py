"""managedFields: who set which field, and when.

A `fieldsV1` set becomes a tree whose keys use the diff's own path components: `f:name` -> "name",
`k:{"name":"web"}` -> ItemKey, `v:"x"` -> ("v", "x"), `i:3` -> 3. A node that is an empty dict
is a leaf the manager owns; "." inside a node means the manager owns the node itself too.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kubedrift.diff.keys import Component, ItemKey

Tree = dict[Any, Any]
SELF = "."


@dataclass(frozen=True)
class ManagedEntry:
    manager: str
    operation: str
    time: str | None
    subresource: str | None
    fields: Any
    """The raw `fieldsV1`; converted to `tree` on first use (most entries of a clean object never are)."""

    @functools.cached_property
    def tree(self) -> Tree:
        return _convert(self.fields)


def _convert_key(raw: str) -> Any:
    prefix, _, rest = raw.partition(":")
    if prefix == "f":
        return rest
    if prefix == "k":
        try:
            values = json.loads(rest)
        except ValueError:
            return raw
        return ItemKey.of(values) if isinstance(values, dict) else raw
    if prefix == "v":
        try:
            return ("v", json.dumps(json.loads(rest), sort_keys=True))
        except ValueError:
            return ("v", rest)
    if prefix == "i" and rest.isdigit():
        return int(rest)
    return raw


def _convert(fields: Any) -> Tree:
    if not isinstance(fields, dict):
        return {}
    return {SELF if k == SELF else _convert_key(k): _convert(v) for k, v in fields.items()}


def parse_managed_fields(body: dict[str, Any]) -> list[ManagedEntry]:
    meta = body.get("metadata")
    raw_entries = meta.get("managedFields") if isinstance(meta, dict) else None
    if not isinstance(raw_entries, list):
        return []
    entries = []
    for raw in raw_entries:
        if not isinstance(raw, dict) or raw.get("fieldsType", "FieldsV1") != "FieldsV1":
            continue
        entries.append(
            ManagedEntry(
                manager=str(raw.get("manager") or ""),
                operation=str(raw.get("operation") or ""),
                time=raw.get("time") if isinstance(raw.get("time"), str) else None,
                subresource=raw.get("subresource") if isinstance(raw.get("subresource"), str) else None,
                fields=raw.get("fieldsV1"),
            )
        )
    return entries


def owns(tree: Tree, path: Sequence[Component]) -> bool:
    """True when the set holds `path`, a field below it, or an atomic field above it."""
    node = tree
    for comp in path:
        if not node:  # a leaf above the path: the manager owns the whole (atomic) value
            return True
        child = node.get(comp)
        if child is None:
            return False
        node = child
    return True


def last_writer(entries: Sequence[ManagedEntry], path: Sequence[Component]) -> ManagedEntry | None:
    """The manager that most recently wrote `path` (status writers excluded)."""
    best: ManagedEntry | None = None
    for entry in entries:
        if entry.subresource == "status" or not owns(entry.tree, path):
            continue
        if best is None or (entry.time or "") > (best.time or ""):
            best = entry
    return best


def owned_leaves(tree: Tree, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Paths of the deepest owned nodes (fields, and list items owned only as a whole)."""
    for key, sub in tree.items():
        if key == SELF:
            continue
        path = (*prefix, key)
        if any(k != SELF for k in sub):
            yield from owned_leaves(sub, path)
        else:
            yield path


def resolve(obj: Any, path: Sequence[Any]) -> tuple[Any, Any] | None:
    """(container, index-or-key) of `path` in a plain object, following ItemKeys into lists."""
    node = obj
    parent: Any = None
    slot: Any = None
    for comp in path:
        parent = node
        if isinstance(comp, ItemKey) and isinstance(node, list):
            slot = next((i for i, item in enumerate(node) if comp.matches(item)), None)
        elif isinstance(comp, tuple) and isinstance(node, list):  # ("v", json) set member
            slot = next((i for i, item in enumerate(node) if json.dumps(item, sort_keys=True) == comp[1]), None)
        elif isinstance(comp, int) and isinstance(node, list):
            slot = comp if comp < len(node) else None
        elif isinstance(comp, str) and isinstance(node, dict):
            slot = comp if comp in node else None
        else:
            slot = None
        if slot is None:
            return None
        node = node[slot]
    return (parent, slot) if parent is not None else None


def value_at(obj: Any, path: Sequence[Any]) -> Any:
    found = resolve(obj, path)
    return None if found is None else found[0][found[1]]
