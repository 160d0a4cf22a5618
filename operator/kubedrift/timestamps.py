"""Times as the Kubernetes API and kubedrift's answers write them: RFC 3339 in UTC with a `Z`."""

from __future__ import annotations

import datetime
from typing import Any


def format_time(moment: datetime.datetime, *, milliseconds: bool = False) -> str:
    """`2026-01-02T03:04:05Z` (whole seconds, as metav1.Time), or `...05.123Z` with `milliseconds`; a naive
    time is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    utc = moment.astimezone(datetime.UTC)
    return utc.isoformat(timespec="milliseconds" if milliseconds else "seconds").replace("+00:00", "Z")


def format_optional_time(moment: datetime.datetime | None) -> str | None:
    """`format_time`, or None for no time."""
    return format_time(moment) if moment is not None else None


def parse_time(text: Any) -> datetime.datetime | None:
    """An RFC 3339 time (a naive one taken as UTC), or None when `text` is not one."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)
