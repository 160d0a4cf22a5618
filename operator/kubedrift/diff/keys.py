"""Merge keys of Kubernetes lists, and the path notation built on them.

Lists whose items have a natural key (the strategic-merge / server-side-apply keys) are matched
by key, never by position: `containers` by name, `ports` by port+protocol, and so on. Inside the
diff, such a list becomes a dict from `ItemKey` to item, which gives deepdiff stable paths and
lines up with the `k:{...}` keys of managedFields.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubedrift.model import DecimalFloat

KEY_DEFAULTS: dict[str, Any] = {"protocol": "TCP"}
"""Server defaults of key fields: a port written without protocol is the TCP port."""


@dataclass(frozen=True, order=True)
class ItemKey:
    """Identity of one list item: sorted (field, value) pairs, e.g. (("name", "web"),)."""

    fields: tuple[tuple[str, Any], ...]

    @classmethod
    def of(cls, values: dict[str, Any]) -> ItemKey:
        return cls(tuple(sorted(values.items())))

    def matches(self, item: Any) -> bool:
        if not isinstance(item, dict):
            return False
        return all(_get(item, f, KEY_DEFAULTS.get(f)) == v for f, v in self.fields)

    def render(self) -> str:
        return "[" + ",".join(f"{f}={v}" for f, v in self.fields) + "]"

    def __repr__(self) -> str:
        return self.render()


def _get(item: dict[str, Any], dotted: str, default: Any = None) -> Any:
    value: Any = item
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return default
        value = value.get(part)
    return default if value is None else value


def _by_fields(*candidates: tuple[str, ...]) -> Callable[[Any], ItemKey | None]:
    """Key by the first candidate tuple whose first field the item has."""

    def key(item: Any) -> ItemKey | None:
        if not isinstance(item, dict):
            return None
        for fields in candidates:
            if _get(item, fields[0]) is None:
                continue
            values = {f: _get(item, f, KEY_DEFAULTS.get(f)) for f in fields}
            if any(v is None for v in values.values()):
                return None
            return ItemKey.of(values)
        return None

    return key


def _hpa_metric_key(item: Any) -> ItemKey | None:
    # autoscaling/v2 MetricSpec: the metric's identity is its type plus the name inside that type.
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        return None
    source = item.get(item["type"][:1].lower() + item["type"][1:])
    name = None
    if isinstance(source, dict):
        name = source.get("name") or _get(source, "metric.name")
    return ItemKey.of({"type": item["type"], "name": name or ""})


MERGE_KEYS: dict[str, Callable[[Any], ItemKey | None]] = {
    "containers": _by_fields(("name",)),
    "initContainers": _by_fields(("name",)),
    "ephemeralContainers": _by_fields(("name",)),
    "env": _by_fields(("name",)),
    "volumes": _by_fields(("name",)),
    "volumeMounts": _by_fields(("mountPath",)),
    "volumeDevices": _by_fields(("devicePath",)),
    "ports": _by_fields(("containerPort", "protocol"), ("port", "protocol")),
    "imagePullSecrets": _by_fields(("name",)),
    "hostAliases": _by_fields(("ip",)),
    "webhooks": _by_fields(("name",)),
    "volumeClaimTemplates": _by_fields(("metadata.name",)),
    "topologySpreadConstraints": _by_fields(("topologyKey", "whenUnsatisfiable")),
    "resourceClaims": _by_fields(("name",)),
    "readinessGates": _by_fields(("conditionType",)),
    "versions": _by_fields(("name",)),
    "metrics": _hpa_metric_key,
}


def by_all_fields(fields: Sequence[str]) -> Callable[[Any], ItemKey | None]:
    """Key by every one of `fields` (a CRD's x-kubernetes-list-map-keys); an item lacking one has no key."""
    names = tuple(fields)

    def key(item: Any) -> ItemKey | None:
        if not isinstance(item, dict):
            return None
        values = {f: item.get(f, KEY_DEFAULTS.get(f)) for f in names}
        if any(v is None or isinstance(v, (dict, list)) for v in values.values()):
            return None
        return ItemKey.of(values)

    return key


ListKeys = Mapping[str, Callable[[Any], ItemKey | None]]
"""Merge keys by the name of the field holding the list (MERGE_KEYS, or a custom resource's own)."""


def key_list(field: str, items: Sequence[Any], keys: ListKeys = MERGE_KEYS) -> dict[ItemKey, Any] | None:
    """The list as {ItemKey: item}, or None when it has no merge key (compare it whole)."""
    key_of = keys.get(field)
    if key_of is None:
        return None
    keyed: dict[ItemKey, Any] = {}
    for item in items:
        key = key_of(item)
        if key is None or key in keyed:
            return None
        keyed[key] = item
    return keyed


Component = str | int | ItemKey
_PLAIN_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def render_path(components: Sequence[Component]) -> str:
    """`spec.template.spec.containers[name=web].image`; map keys with dots or slashes are quoted."""
    out: list[str] = []
    for comp in components:
        if isinstance(comp, ItemKey):
            out.append(comp.render())
        elif isinstance(comp, int):
            out.append(f"[{comp}]")
        elif comp and set(comp) <= _PLAIN_KEY_CHARS:
            out.append(("." if out else "") + comp)
        else:
            out.append(f"[{json.dumps(comp)}]")
    return "".join(out)


def unkey(value: Any) -> Any:
    """Turn keyed dicts back into lists, and decimal-text floats into plain floats, for display."""
    if isinstance(value, dict):
        if value and all(isinstance(k, ItemKey) for k in value):
            return [unkey(v) for v in value.values()]
        return {k: unkey(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unkey(v) for v in value]
    if type(value) is DecimalFloat:  # only the diff needs its text; reports, YAML and BSON get a float
        return float(value)
    return value
