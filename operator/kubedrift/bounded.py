"""Size bounds on the drift values that leave the process (DriftReports, MongoDB records).

One mechanism for every consumer: a desired/live value whose JSON is longer than MAX_VALUE_CHARS is
replaced by its size and a hash, and at most MAX_CHANGES changes of one resource are kept. A value
too deeply nested to encode is replaced the same way, without its text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kubedrift.hashes import canonical_json, text_hash
from kubedrift.model import JSON

MAX_CHANGES = 100
MAX_VALUE_CHARS = 2048


def bounded(value: JSON) -> JSON:
    """`value` itself when small, else `<N bytes, sha256:…>` (the hash tells two big values apart)."""
    try:
        text = canonical_json(value)
    except (RecursionError, ValueError):
        return "<value too deeply nested to show>"
    if len(text) <= MAX_VALUE_CHARS:
        return value
    return f"<{len(text)} bytes, {text_hash(text)}>"


def bounded_change(change: Mapping[str, JSON]) -> dict[str, JSON]:
    """A change (as `Change.to_json()` gives it) with its desired and live values bounded."""
    return {**change, "desired": bounded(change.get("desired")), "live": bounded(change.get("live"))}


def bounded_changes(changes: Sequence[Mapping[str, JSON]]) -> list[dict[str, JSON]]:
    """The first MAX_CHANGES changes, values bounded."""
    return [bounded_change(c) for c in changes[:MAX_CHANGES]]
