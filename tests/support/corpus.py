"""The captured live-object corpus (../shared/corpus/live-objects, beside the repository)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO.parent / "shared" / "corpus" / "live-objects"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def corpus_path(name: str) -> Path:
    path = CORPUS / name
    if not path.exists():
        raise FileNotFoundError(f"corpus file {path} is missing: the shared/ folder must sit beside the repository")
    return path


def load_docs(name: str) -> list[dict[str, Any]]:
    text = corpus_path(name).read_text()
    if name.endswith(".json"):
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    return [d for d in yaml.safe_load_all(text) if d]


def load_one(name: str) -> dict[str, Any]:
    return load_docs(name)[0]


def last_applied(live: dict[str, Any]) -> dict[str, Any]:
    """The manifest kubectl applied, as recorded on the live object."""
    desired: dict[str, Any] = json.loads(live["metadata"]["annotations"][LAST_APPLIED])
    return desired


def in_ns(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    """A copy of `body` placed in `namespace`."""
    body = copy.deepcopy(body)
    body["metadata"]["namespace"] = namespace
    return body
