"""One time format for reports, status, events, API answers and scan requests (kubedrift.timestamps)."""

from __future__ import annotations

import datetime

from kubedrift.timestamps import format_time, parse_time

UTC = datetime.UTC
MOMENT = datetime.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def test_times_are_written_in_utc_with_a_z() -> None:
    assert format_time(MOMENT) == "2026-01-02T03:04:05Z"
    assert format_time(MOMENT, milliseconds=True) == "2026-01-02T03:04:05.678Z"
    paris = MOMENT.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
    assert format_time(paris) == "2026-01-02T03:04:05Z"
    assert format_time(MOMENT.replace(tzinfo=None)) == "2026-01-02T03:04:05Z"  # naive: taken as UTC


def test_times_read_back_and_anything_else_is_none() -> None:
    assert parse_time(format_time(MOMENT)) == MOMENT.replace(microsecond=0)
    assert parse_time("2026-01-02T04:04:05+01:00") == MOMENT.replace(microsecond=0)
    assert parse_time("2026-01-02T03:04:05") == MOMENT.replace(microsecond=0)
    for bad in ("", "yesterday", None, 1767323045, "2026-13-01T00:00:00Z"):
        assert parse_time(bad) is None
