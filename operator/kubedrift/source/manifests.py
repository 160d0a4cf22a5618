"""Desired state from files: YAML/JSON manifests, `kind: List`, kustomize directories.

One unreadable file or object becomes a LoadError; everything else still loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from kubedrift.kinds import BuiltinScopes, ScopeResolver
from kubedrift.model import JSON, KubeObject, LoadError, ResourceKey, api_group
from kubedrift.source.bounds import MAX_OBJECTS_PER_SCAN, MAX_RENDERED_BYTES
from kubedrift.source.documents import (
    DocumentError,
    looks_like_json,
    parse_json,
    parse_yaml,
    read_documents,
    read_text,
)
from kubedrift.source.kustomize import (
    DEFAULT_TIMEOUT,
    KustomizeError,
    is_kustomization_dir,
    kustomization_file,
    render_kustomization,
)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"
STDIN_SOURCE = "<stdin>"
# Read like any file (same decoding and limits); Linux and macOS both have it.
_STDIN_DEVICE = "/dev/stdin"
# Configuration files of tools, not objects of the cluster.
_TOOL_GROUPS = frozenset({"kustomize.config.k8s.io", "config.kubernetes.io"})


@dataclass
class _Collector:
    default_namespace: str
    scopes: ScopeResolver
    objects: list[KubeObject] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    seen: dict[ResourceKey, tuple[str, str]] = field(default_factory=dict)
    over_limit: bool = False

    def add_documents(self, docs: list[JSON], source: str, label: str = "document") -> None:
        for where, body in _candidates(docs, label):
            if _is_object(body):
                self._add(body, source, where)
            else:
                self.errors.append(LoadError(source, f"{where}: {_why_not_an_object(body)}"))

    def _add(self, body: dict[str, JSON], source: str, where: str) -> None:
        if len(self.objects) >= MAX_OBJECTS_PER_SCAN:
            if not self.over_limit:
                self.over_limit = True
                self.errors.append(LoadError(source, f"{where}: more than {MAX_OBJECTS_PER_SCAN} objects in one scan; "
                                                     "this one and all that follow are not read"))
            return
        kind = body["kind"]
        meta = body.get("metadata")
        if meta is None:
            meta = body["metadata"] = {}
        if not isinstance(meta, dict):
            self.errors.append(LoadError(source, f"{where}: {kind} metadata must be a mapping"))
            return
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            self.errors.append(LoadError(source, f"{where}: {kind} has no metadata.name"))
            return
        namespace = meta.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            self.errors.append(LoadError(source, f"{where}: {kind} {name}: metadata.namespace must be a string"))
            return
        if self.scopes.is_namespaced(api_group(str(body["apiVersion"])), str(kind)):
            if not namespace:
                meta["namespace"] = self.default_namespace
        elif "namespace" in meta:
            # The API server ignores a namespace on cluster-scoped objects; so does the identity.
            del meta["namespace"]
        obj = KubeObject(body=body, source=source)
        first = self.seen.get(obj.key)
        if first is not None:
            first_source, first_where = first
            self.errors.append(
                LoadError(
                    source,
                    f"{obj.key.id} ({obj.api_version}) is declared twice: in {first_source} ({first_where}) "
                    f"and in {source} ({where}); the first one is used",
                )
            )
            return
        self.seen[obj.key] = (source, where)
        self.objects.append(obj)


def _has(value: JSON, field: str) -> bool:
    return isinstance(value, dict) and isinstance(value.get(field), str) and bool(value[field])


def _is_object(value: JSON) -> bool:
    return _has(value, "apiVersion") and _has(value, "kind")


def _why_not_an_object(value: JSON) -> str:
    for present, absent in (("kind", "apiVersion"), ("apiVersion", "kind")):
        if _has(value, present):
            return f"has {present} but no {absent} (a Kubernetes object needs both; a file with neither is skipped)"
    return "not a Kubernetes object (no apiVersion/kind)"


def _candidates(docs: list[JSON], label: str) -> Iterator[tuple[str, JSON]]:
    """(position, value) for every object in the documents and every item of a List or JSON array.

    A document with neither apiVersion nor kind (values.yaml, empty) is skipped; one with only one
    of them is yielded, to be reported: it is a manifest with a mistake, not a values file. List
    items are yielded as they are, since an item that is not an object is a mistake worth reporting.
    """
    for index, doc in enumerate(docs, start=1):
        where = f"{label} {index}"
        if isinstance(doc, list):  # a JSON array of objects
            items: list[JSON] = doc
        elif _is_object(doc) and doc["kind"] == "List" and isinstance(doc.get("items"), list):
            items = doc["items"]
        else:
            if _is_object(doc):
                if api_group(doc["apiVersion"]) not in _TOOL_GROUPS:
                    yield where, doc
            elif _has(doc, "apiVersion") or _has(doc, "kind"):
                yield where, doc
            continue
        for i, item in enumerate(items, start=1):
            yield f"{where}, item {i}", item


def _load_file(collector: _Collector, path: str, source: str) -> None:
    try:
        docs = read_documents(path)
    except DocumentError as exc:
        collector.errors.append(LoadError(source, str(exc)))
        return
    collector.add_documents(docs, source)


def _load_stdin(collector: _Collector) -> None:
    """Manifests piped in (`helm template ... | kubedrift scan --manifests -`): YAML stream or JSON."""
    try:
        text = read_text(_STDIN_DEVICE, max_bytes=MAX_RENDERED_BYTES)  # a whole rendered app, as kustomize's
        docs = [parse_json(text)] if looks_like_json(text) else parse_yaml(text)
    except DocumentError as exc:
        collector.errors.append(LoadError(STDIN_SOURCE, str(exc)))
        return
    collector.add_documents(docs, STDIN_SOURCE)


def _load_kustomization(collector: _Collector, directory: str, source: str, timeout: float,
                        root: str | None) -> None:
    try:
        rendered = render_kustomization(directory, root=root, timeout=timeout)
        docs = parse_yaml(rendered)
    except (KustomizeError, DocumentError) as exc:
        collector.errors.append(LoadError(source, str(exc)))
        return
    collector.add_documents(docs, source, label="rendered document")


def _referenced_dirs(kustomization_dir: str) -> set[str]:
    """Local directories a kustomization builds on (resources/bases/components entries)."""
    path = kustomization_file(kustomization_dir)
    if path is None:
        return set()
    try:
        docs = parse_yaml(read_text(path))
    except DocumentError:
        return set()  # rendering reports the problem
    out = set()
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        for section in ("resources", "bases", "components"):
            entries = doc.get(section)
            for entry in entries if isinstance(entries, list) else []:
                target = os.path.join(kustomization_dir, str(entry))
                if os.path.isdir(target):
                    out.add(os.path.realpath(target))
    return out


def _leaves(path: str, boundary: str) -> bool:
    """A symlink whose target is outside `boundary` (the repository): never read."""
    real, top = os.path.realpath(path), os.path.realpath(boundary)
    return not (real == top or real.startswith(top + os.sep))


def _walk(collector: _Collector, top: str, timeout: float, root: str | None) -> None:
    """Every manifest under `top`, sorted; a kustomization directory is rendered as one whole.

    A kustomization another one in the tree builds on (a base of an overlay) is not rendered on
    its own: its objects reach the cluster through the overlay, and would clash with it.
    """
    found: list[tuple[str, bool]] = []  # (path, is a kustomization dir) in walk order
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if folder != top and is_kustomization_dir(folder):
            dirs[:] = []
            found.append((folder, True))
            continue
        found += [
            (os.path.join(folder, name), False)
            for name in sorted(files)
            if not name.startswith(".") and name.endswith(MANIFEST_SUFFIXES)
        ]
    referenced: set[str] = set()
    for path, is_kustomization in found:
        if is_kustomization:
            referenced |= _referenced_dirs(path)
    boundary = root if root is not None else top
    for path, is_kustomization in found:
        source = os.path.relpath(path, top)
        if _leaves(path, boundary):
            collector.errors.append(LoadError(source, "a symbolic link that leads out of the repository; not read"))
        elif not is_kustomization:
            _load_file(collector, path, source)
        elif os.path.realpath(path) not in referenced:
            _load_kustomization(collector, path, source, timeout, root)


def load_manifests(
    paths: Sequence[str],
    *,
    default_namespace: str = "default",
    scopes: ScopeResolver | None = None,
    kustomize_timeout: float = DEFAULT_TIMEOUT,
    root: str | None = None,
) -> tuple[list[KubeObject], list[LoadError]]:
    """Objects declared in `paths` (files or directories, in order) and the errors met on the way.

    `root` (a checkout) bounds what may be read: files whose real path leaves it, and kustomize
    paths out of it, are errors. Without it, each directory bounds its own files and kustomize may
    reach local paths anywhere (the CLI user's own tree), never remote ones.

    `-` reads stdin. `KubeObject.source` is the path as given for files, the path relative to the
    given directory for files found under it, the directory for kustomize output, `<stdin>` for stdin.
    """
    collector = _Collector(default_namespace, scopes if scopes is not None else BuiltinScopes())
    if list(paths).count(STDIN) > 1:
        collector.errors.append(LoadError(STDIN_SOURCE, f"'{STDIN}' is given more than once: stdin is read once"))
    for index, path in enumerate(paths):
        if path == STDIN:
            if STDIN not in paths[:index]:
                _load_stdin(collector)
        elif os.path.isdir(path):
            if is_kustomization_dir(path):
                _load_kustomization(collector, path, path, kustomize_timeout, root)
            else:
                _walk(collector, path, kustomize_timeout, root)
        elif root is not None and os.path.lexists(path) and _leaves(path, root):
            collector.errors.append(LoadError(path, "a symbolic link that leads out of the repository; not read"))
        elif os.path.exists(path):
            _load_file(collector, path, path)
        else:
            collector.errors.append(LoadError(path, "no such file or directory"))
    return collector.objects, collector.errors
