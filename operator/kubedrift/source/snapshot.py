"""Live state from a file, as `kubectl get -o yaml|json` prints it.

Hot path of the 10k-object benchmark: JSON goes through json.loads (far faster than YAML) and
decoded objects are wrapped as they are, never copied.
"""

from __future__ import annotations

from collections.abc import Iterator

from kubedrift.model import JSON, KubeObject, LoadError
from kubedrift.source.documents import DocumentError, looks_like_json, parse_json, parse_yaml, read_text


def _items(docs: list[JSON]) -> Iterator[tuple[str, JSON]]:
    for index, doc in enumerate(docs, start=1):
        where = f"document {index}"
        if doc is None:
            continue
        if isinstance(doc, list):
            for i, item in enumerate(doc, start=1):
                yield f"{where}, item {i}", item
        elif isinstance(doc, dict) and isinstance(doc.get("items"), list) and str(doc.get("kind", "")).endswith("List"):
            # A typed list straight from the API (DeploymentList) leaves apiVersion/kind off its items.
            list_kind = str(doc["kind"])
            item_kind = list_kind[: -len("List")] if list_kind != "List" else ""
            api_version = doc.get("apiVersion")
            for i, item in enumerate(doc["items"], start=1):
                if item_kind and isinstance(item, dict):
                    item.setdefault("kind", item_kind)
                    item.setdefault("apiVersion", api_version)
                yield f"{where}, item {i}", item
        else:
            yield where, doc


def load_live_snapshot(path: str) -> tuple[list[KubeObject], list[LoadError]]:
    """Objects of a snapshot file: a `List` (JSON or YAML), multi-document YAML, a JSON array or one object."""
    try:
        text = read_text(path, max_bytes=None)  # the user's own kubectl output: a cluster may be large
        docs = [parse_json(text)] if looks_like_json(text) else parse_yaml(text)
    except DocumentError as exc:
        return [], [LoadError(path, str(exc))]
    objects: list[KubeObject] = []
    errors: list[LoadError] = []
    for where, item in _items(docs):
        if not isinstance(item, dict) or not item.get("kind") or not item.get("apiVersion"):
            errors.append(LoadError(path, f"{where}: not a Kubernetes object (no apiVersion/kind)"))
            continue
        meta = item.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            errors.append(LoadError(path, f"{where}: {item['kind']} has no metadata.name"))
            continue
        objects.append(KubeObject(body=item, source=path))
    return objects, errors
