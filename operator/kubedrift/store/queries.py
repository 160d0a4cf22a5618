"""Read side of the store: validated filters, pagination, and the JSON shape of records and statistics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubedrift.model import KubedriftError, Severity
from kubedrift.store.records import RecordState
from kubedrift.timestamps import format_time

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
RECORD_FILTERS = ("policy", "namespace", "kind", "state", "severity")


class QueryError(KubedriftError, ValueError):
    """A bad query parameter; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(name, f"{raw!r} is not an integer") from None
    if not low <= value <= high:
        raise QueryError(name, f"must be between {low} and {high}")
    return value


def _policy(raw: str | None) -> str | None:
    if raw is None:
        return None
    namespace, sep, name = raw.partition("/")
    if not sep or not namespace or not name or "/" in name:
        raise QueryError("policy", f"{raw!r} must look like namespace/name")
    return raw


@dataclass(frozen=True)
class RecordQuery:
    policy: str | None = None
    namespace: str | None = None
    kind: str | None = None
    state: str | None = None
    severity: str | None = None
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def parse(cls, params: Mapping[str, str], *, allowed: tuple[str, ...] = (*RECORD_FILTERS, "limit", "offset"),
              **fixed: str) -> RecordQuery:
        """From URL query parameters; unknown names and bad values raise QueryError."""
        for name in params:
            if name not in allowed:
                raise QueryError(name, f"unknown parameter (expected one of {', '.join(allowed)})")
        state = params.get("state")
        if state is not None and state not in {s.value for s in RecordState}:
            raise QueryError("state", f"{state!r} is not one of active, resolved, none")
        severity = params.get("severity")
        if severity is not None and severity not in {s.label for s in Severity}:
            raise QueryError("severity", f"{severity!r} is not one of low, medium, high, critical")
        for name in ("namespace", "kind"):
            if params.get(name) == "":
                raise QueryError(name, "must not be empty")
        return cls(
            policy=_policy(params.get("policy")),
            namespace=params.get("namespace"),
            kind=params.get("kind"),
            state=fixed.get("state", state),
            severity=severity,
            limit=_int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
            offset=_int(params, "offset", 0, 0, MAX_OFFSET),
        )

    def mongo_filter(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.policy:
            out["policy"] = self.policy
        if self.namespace is not None:
            out["resource.namespace"] = self.namespace
        if self.kind:
            out["resource.kind"] = self.kind
        if self.state:
            out["state"] = self.state
        if self.severity:
            out["severity"] = self.severity
        return out


def parse_scope(params: Mapping[str, str]) -> RecordQuery:
    """Filters accepted by the statistics endpoint: policy and namespace."""
    return RecordQuery.parse(params, allowed=("policy", "namespace"))


def iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value, milliseconds=True)
    return value


PUBLIC_RECORD_FIELDS = (
    "policy", "resourceId", "resource", "state", "driftState", "severity", "score", "categories",
    "firstSeen", "lastSeen", "resolvedAt", "resolution", "occurrences", "episode", "desiredHash",
    "liveHash", "revision", "changes",
)
PUBLIC_EVENT_FIELDS = ("type", "at", "episode", "severity", "categories", "revision", "durationSeconds")


def record_json(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {name: iso(doc.get(name)) for name in PUBLIC_RECORD_FIELDS}


def event_json(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {name: iso(doc[name]) for name in PUBLIC_EVENT_FIELDS if name in doc}


def statistics_json(by_state: Mapping[str, Mapping[str, Any]], active_by_severity: Mapping[str, int],
                    events_by_type: Mapping[str, int]) -> dict[str, Any]:
    counts = {s.value: int(by_state.get(s.value, {}).get("n", 0)) for s in RecordState}
    total = sum(counts.values())
    episodes = sum(int(v.get("resolvedEpisodes", 0)) for v in by_state.values())
    seconds = sum(float(v.get("resolveSeconds", 0.0)) for v in by_state.values())

    def percent(n: int) -> float:
        return round(100.0 * n / total, 1) if total else 0.0

    return {
        "total": total,
        "active": counts["active"],
        "resolved": counts["resolved"],
        "untracked": counts["none"],
        "activePercent": percent(counts["active"]),
        "resolvedPercent": percent(counts["resolved"]),
        "resolvedEpisodes": episodes,
        "meanTimeToResolveSeconds": round(seconds / episodes, 3) if episodes else None,
        "activeBySeverity": {s.label: int(active_by_severity.get(s.label, 0)) for s in Severity},
        "eventsInRetention": {t: int(events_by_type.get(t, 0)) for t in ("detected", "changed", "resolved",
                                                                         "untracked")},
    }
