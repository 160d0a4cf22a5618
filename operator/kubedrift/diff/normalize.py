"""Normalization applied to both sides before comparing.

Drops what the server owns (status, server metadata), and turns Secret payloads into keyed digests
(kubedrift.digest) so that no Secret value exists anywhere past this point (reports, logs, records,
metrics).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from kubedrift.digest import secret_digest

SERVER_METADATA = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "selfLink",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    }
)
COMPARED_ELSEWHERE = SERVER_METADATA | {"namespace"}
"""Server metadata, and the namespace: the identity has matched it already (and a cluster-scoped
kind's namespace written in Git is ignored, as the server ignores it)."""
SERVER_ANNOTATIONS = frozenset(
    {
        "kubectl.kubernetes.io/last-applied-configuration",
        "deployment.kubernetes.io/revision",
    }
)
TOP_LEVEL_DROPPED = frozenset({"apiVersion", "kind", "status"})
SECRET_PAYLOAD_FIELDS = ("data", "stringData")


def _decoded(b64: Any) -> bytes:
    if b64 is None:
        return b""
    text = str(b64)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        # Not base64 (the API server would reject it); hash the text itself, never show it.
        return text.encode()


def _secret_payload(body: dict[str, Any]) -> dict[str, str]:
    """data + stringData (stringData wins, as on the API server) as digests of the decoded bytes."""
    digests: dict[str, str] = {}
    data = body.get("data")
    if isinstance(data, dict):
        for key, value in data.items():
            digests[str(key)] = secret_digest(_decoded(value))
    string_data = body.get("stringData")
    if isinstance(string_data, dict):
        for key, value in string_data.items():
            digests[str(key)] = secret_digest("" if value is None else str(value))
    return digests


def redact_secret(body: dict[str, Any]) -> dict[str, Any]:
    """A Secret with every value replaced by its digest (any other kind is returned as is)."""
    if body.get("kind") != "Secret":
        return body
    out = {k: v for k, v in body.items() if k not in SECRET_PAYLOAD_FIELDS}
    if any(isinstance(body.get(f), dict) for f in SECRET_PAYLOAD_FIELDS):
        out["data"] = _secret_payload(body)
    meta = body.get("metadata")
    if isinstance(meta, dict):
        annotations = meta.get("annotations")
        if isinstance(annotations, dict) and SERVER_ANNOTATIONS & annotations.keys():
            # last-applied-configuration of a Secret embeds its data.
            out["metadata"] = {
                **meta,
                "annotations": {k: v for k, v in annotations.items() if k not in SERVER_ANNOTATIONS},
            }
    return out


def drop_server_annotations(meta: dict[str, Any]) -> None:
    """Take the server's own annotations out of `meta` (a copy: the annotations map is replaced, never
    changed), and the annotations map itself when nothing else is in it."""
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        kept = {k: v for k, v in annotations.items() if k not in SERVER_ANNOTATIONS}
        if kept:
            meta["annotations"] = kept
        else:
            meta.pop("annotations")


def normalize(body: dict[str, Any]) -> dict[str, Any]:
    """A shallow-copied body without server-owned fields, Secret values digested.

    Nested structures are shared with the input, never mutated.
    """
    body = redact_secret(body)
    out = {k: v for k, v in body.items() if k not in TOP_LEVEL_DROPPED}
    meta = body.get("metadata")
    if isinstance(meta, dict):
        clean_meta = {k: v for k, v in meta.items() if k not in COMPARED_ELSEWHERE}
        drop_server_annotations(clean_meta)
        out["metadata"] = clean_meta
    return out
