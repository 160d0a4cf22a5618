"""A watch stream's bytes -> events: lines split across chunks, several per chunk, garbage and a hostile
endless line are clear errors, and closing it from another thread ends it quietly."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from kubedrift.cluster import client as client_module
from kubedrift.cluster.client import ApiError, WatchStream


class Response:
    """Stands in for urllib3's streaming response (a library object, not kubedrift's)."""

    def __init__(self, chunks: list[bytes], fail_with: Exception | None = None) -> None:
        self.chunks = chunks
        self.fail_with = fail_with
        self.closed = False

    def stream(self, amt: int | None = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self.chunks
        if self.fail_with is not None:
            raise self.fail_with

    def shutdown(self) -> None:
        self.closed = True

    def close(self) -> None:
        self.closed = True


def _event(kind: str, name: str) -> bytes:
    return json.dumps({"type": kind, "object": {"metadata": {"name": name, "resourceVersion": "7"}}}).encode()


def test_events_split_and_joined_across_chunks() -> None:
    a, b, c = _event("ADDED", "a"), _event("MODIFIED", "b"), _event("DELETED", "c")
    data = a + b"\n" + b + b"\n\n" + c + b"\n"
    chunks = [data[:10], data[10:len(a) + 5], data[len(a) + 5:]]
    response = Response(chunks)
    events = list(WatchStream(response))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "a"), ("MODIFIED", "b"), ("DELETED", "c")]
    assert response.closed


def test_garbage_is_a_clear_error() -> None:
    with pytest.raises(ApiError, match="not JSON"):
        list(WatchStream(Response([b"<html>proxy error</html>\n"])))


def test_an_endless_line_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_WATCH_LINE", 1000)
    with pytest.raises(ApiError, match="exceeds 1000 bytes"):
        list(WatchStream(Response([b"{" + b"x" * 600, b"y" * 600])))


def test_a_broken_connection_is_an_error_and_a_closed_one_is_not() -> None:
    broken = WatchStream(Response([_event("ADDED", "a") + b"\n"], fail_with=ConnectionResetError("gone")))
    with pytest.raises(ApiError, match="broke: ConnectionResetError"):
        list(broken)
    closing = WatchStream(Response([_event("ADDED", "a") + b"\n"], fail_with=OSError("shut down")))
    seen = []
    for event in closing:
        seen.append(event)
        closing.close()  # what stop() does from another thread
    assert len(seen) == 1
