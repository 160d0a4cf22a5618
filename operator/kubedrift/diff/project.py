"""Project the live object onto what Git declares.

Walks desired and live together and returns two trees of the same shape: the desired tree and the
live values at exactly those places. Maps keep only the keys Git sets; keyed lists become
{ItemKey: item} and are matched by key; other lists compare whole (item fields only live are
still defaults when both lists have the same length). Values that are equal in meaning
(`500m` and `0.5` CPU, `80` and `"80"`, `[]` and absent) come back identical, so only real
differences remain for deepdiff.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from kubedrift.diff.defaults import controller_data_keys, is_zero
from kubedrift.diff.keys import MERGE_KEYS, ListKeys, key_list
from kubedrift.model import DecimalFloat

ABSENT: Any = type("Absent", (), {"__repr__": lambda self: "<absent>"})()

QUANTITY_MAPS = frozenset(
    {
        "requests",
        "limits",
        "hard",
        "capacity",
        "allocatable",
        "default",
        "defaultRequest",
        "max",
        "min",
        "maxLimitRequestRatio",
        "overhead",
    }
)
QUANTITY_FIELDS = frozenset({"sizeLimit", "divisor", "storage", "targetAverageValue"})
# (parent, field) of quantities with generic names: HPA autoscaling/v2(beta2) MetricTarget.
QUANTITY_PAIRS = frozenset({("target", "value"), ("target", "averageValue")})
WHOLE_MAPS = {"ConfigMap": ("data", "binaryData"), "Secret": ("data",)}


def _is_empty(value: Any) -> bool:
    return value is None or value is ABSENT or value == {} or value == []


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    # Imported on first use: the kubernetes package costs ~0.4 s to import, and most scans never
    # meet two spellings of one quantity.
    from kubernetes.utils import parse_quantity

    if isinstance(value, float):
        # The API server reads the number's decimal text (`0.1` is 100m); a binary float would
        # be 0.1000000000000000055... Plain floats (not from our loaders) use their shortest repr.
        value = value.text if isinstance(value, DecimalFloat) else repr(value)
    try:
        return Decimal(parse_quantity(value))  # type: ignore[no-untyped-call]
    except (ValueError, TypeError, ArithmeticError):
        return None


def equivalent(desired: Any, live: Any, quantity: bool) -> bool:
    """Scalars equal in meaning: same value, int-or-string, or (in quantity places) same amount."""
    if desired == live and isinstance(desired, bool) == isinstance(live, bool):
        return True
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    if isinstance(desired, (int, str)) and isinstance(live, (int, str)) and str(desired) == str(live):
        return True
    if quantity:
        d, lv = _quantity(desired), _quantity(live)
        return d is not None and d == lv
    return False


class Projector:
    """Projects one object: `list_keys` match list items, `zero_omitted` names the fields whose
    zero value the server leaves out (built-in kinds only: a custom resource keeps its `false`)."""

    def __init__(self, list_keys: ListKeys = MERGE_KEYS, zero_omitted: Mapping[str, frozenset[str]] | None = None):
        self.list_keys = list_keys
        self.zero_omitted: Mapping[str, frozenset[str]] = zero_omitted or {}

    def clean(self, value: Any, field: str) -> Any:
        """Desired value with nulls dropped and keyed lists keyed (for parts live lacks entirely)."""
        if isinstance(value, dict):
            return {k: self.clean(v, k) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            keyed = key_list(field, value, self.list_keys)
            if keyed is not None:
                return {k: self.clean(v, field) for k, v in keyed.items()}
            return [self.clean(v, field) for v in value]
        return value

    def project(self, desired: Any, live: Any, field: str = "", parent: str = "") -> tuple[Any, Any]:
        """(desired', live') of the same shape; live' is ABSENT where live has nothing."""
        if isinstance(desired, dict):
            if not isinstance(live, dict):
                if _is_empty(desired) and _is_empty(live):
                    return {}, {}
                return self.clean(desired, field), live
            out_d: dict[Any, Any] = {}
            out_l: dict[Any, Any] = {}
            omitted = self.zero_omitted.get(field, ())
            for key, d_value in desired.items():
                if d_value is None:
                    continue
                l_value = live.get(key, ABSENT)
                if type(d_value) is type(l_value) and d_value == l_value:
                    # Equal as is: nothing only-live inside, nothing to normalize (the common case).
                    out_d[key] = out_l[key] = d_value
                    continue
                if _is_empty(d_value) and _is_empty(l_value):
                    out_d[key] = out_l[key] = d_value
                    continue
                if l_value is ABSENT and key in omitted and is_zero(d_value):
                    # `readOnly: false` comes back absent: the server drops zero values of plain fields.
                    out_d[key] = out_l[key] = d_value
                    continue
                p_d, p_l = self.project(d_value, l_value, key, field)
                out_d[key] = p_d
                if p_l is not ABSENT:
                    out_l[key] = p_l
            return out_d, out_l
        if isinstance(desired, list):
            if _is_empty(live) and not desired:
                return [], []
            if not isinstance(live, list):
                return self.clean(desired, field), live
            return self._project_list(desired, live, field)
        quantity = parent in QUANTITY_MAPS or field in QUANTITY_FIELDS or (parent, field) in QUANTITY_PAIRS
        if equivalent(desired, live, quantity):
            return desired, desired
        return desired, live

    def _project_list(self, desired: list[Any], live: list[Any], field: str) -> tuple[Any, Any]:
        keyed_d = key_list(field, desired, self.list_keys)
        keyed_l = key_list(field, live, self.list_keys) if keyed_d is not None else None
        if keyed_d is not None and keyed_l is not None:
            out_d: dict[Any, Any] = {}
            out_l: dict[Any, Any] = {}
            for item_key, d_item in keyed_d.items():
                l_item = keyed_l.get(item_key, ABSENT)
                p_d, p_l = self.project(d_item, l_item, field)
                out_d[item_key] = p_d
                if p_l is not ABSENT:
                    out_l[item_key] = p_l
            return out_d, out_l
        if len(desired) == len(live):
            pairs = [self.project(d, lv, field) for d, lv in zip(desired, live, strict=True)]
            return [p[0] for p in pairs], [p[1] for p in pairs]
        return self.clean(desired, field), list(live)


def project_object(
    kind: str, desired: dict[str, Any], live: dict[str, Any], projector: Projector | None = None
) -> tuple[Any, Any]:
    """Project a whole (normalized) object; ConfigMap and Secret payloads compare as whole maps.

    Keys a controller writes into such a map (a service-account token Secret's `token`) are
    compared only when Git declares them.
    """
    projector = projector or Projector()
    whole = WHOLE_MAPS.get(kind, ())
    declared = [f for f in whole if f in desired]
    if not declared:
        return projector.project(desired, live)
    rest_d = {k: v for k, v in desired.items() if k not in whole}
    rest_l = {k: v for k, v in live.items() if k not in whole}
    out_d, out_l = projector.project(rest_d, rest_l)
    controller_keys = controller_data_keys(kind, live)
    for f in whole:
        d_map = desired.get(f) or {}
        l_map = {k: v for k, v in (live.get(f) or {}).items() if k in d_map or k not in controller_keys}
        if d_map or l_map:
            out_d[f] = {k: ("" if v is None else v) for k, v in d_map.items()}
            out_l[f] = {k: ("" if v is None else v) for k, v in l_map.items()}
    return out_d, out_l
