"""Project the live object onto what Git declares.

Walks desired and live together and returns two trees of the same shape: the desired tree and the
live values at exactly those places. Maps keep only the keys Git sets; keyed lists become
{ItemKey: item} and are matched by key; other lists compare whole (item fields only live are
still defaults when both lists have the same length). Values that are equal in meaning
(`500m` and `0.5` CPU, `80` and `"80"`, `[]` and absent) come back identical, so only real
differences remain for deepdiff.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubedrift.diff.keys import key_list

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
QUANTITY_FIELDS = frozenset({"sizeLimit", "divisor", "storage"})
WHOLE_MAPS = {"ConfigMap": ("data", "binaryData"), "Secret": ("data",)}


def _is_empty(value: Any) -> bool:
    return value is None or value is ABSENT or value == {} or value == []


def _quantity(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    # Imported on first use: the kubernetes package costs ~0.4 s to import, and most scans never
    # meet two spellings of one quantity.
    from kubernetes.utils import parse_quantity

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


def _clean(value: Any, field: str) -> Any:
    """Desired value with nulls dropped and keyed lists keyed (for parts live lacks entirely)."""
    if isinstance(value, dict):
        return {k: _clean(v, k) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        keyed = key_list(field, value)
        if keyed is not None:
            return {k: _clean(v, field) for k, v in keyed.items()}
        return [_clean(v, field) for v in value]
    return value


def project(desired: Any, live: Any, field: str = "", parent: str = "") -> tuple[Any, Any]:
    """(desired', live') of the same shape; live' is ABSENT where live has nothing."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            if _is_empty(desired) and _is_empty(live):
                return {}, {}
            return _clean(desired, field), live
        out_d: dict[Any, Any] = {}
        out_l: dict[Any, Any] = {}
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
            p_d, p_l = project(d_value, l_value, key, field)
            out_d[key] = p_d
            if p_l is not ABSENT:
                out_l[key] = p_l
        return out_d, out_l
    if isinstance(desired, list):
        if _is_empty(live) and not desired:
            return [], []
        if not isinstance(live, list):
            return _clean(desired, field), live
        return _project_list(desired, live, field)
    if equivalent(desired, live, parent in QUANTITY_MAPS or field in QUANTITY_FIELDS):
        return desired, desired
    return desired, live


def _project_list(desired: list[Any], live: list[Any], field: str) -> tuple[Any, Any]:
    keyed_d = key_list(field, desired)
    keyed_l = key_list(field, live) if keyed_d is not None else None
    if keyed_d is not None and keyed_l is not None:
        out_d: dict[Any, Any] = {}
        out_l: dict[Any, Any] = {}
        for item_key, d_item in keyed_d.items():
            l_item = keyed_l.get(item_key, ABSENT)
            p_d, p_l = project(d_item, l_item, field)
            out_d[item_key] = p_d
            if p_l is not ABSENT:
                out_l[item_key] = p_l
        return out_d, out_l
    if len(desired) == len(live):
        pairs = [project(d, lv, field) for d, lv in zip(desired, live, strict=True)]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    return _clean(desired, field), list(live)


def project_object(kind: str, desired: dict[str, Any], live: dict[str, Any]) -> tuple[Any, Any]:
    """Project a whole (normalized) object; ConfigMap and Secret payloads compare as whole maps."""
    whole = WHOLE_MAPS.get(kind, ())
    declared = [f for f in whole if f in desired]
    if not declared:
        return project(desired, live)
    rest_d = {k: v for k, v in desired.items() if k not in whole}
    rest_l = {k: v for k, v in live.items() if k not in whole}
    out_d, out_l = project(rest_d, rest_l)
    for f in whole:
        d_map = desired.get(f) or {}
        l_map = live.get(f) or {}
        if d_map or l_map:
            out_d[f] = {k: ("" if v is None else v) for k, v in d_map.items()}
            out_l[f] = {k: ("" if v is None else v) for k, v in l_map.items()}
    return out_d, out_l
