"""The manifests of a checkout: `spec.source.paths` confined to the repository, names relative to it."""

from __future__ import annotations

import os
from collections.abc import Sequence

from kubedrift.kinds import ScopeResolver
from kubedrift.model import KubeObject, LoadError
from kubedrift.source.manifests import load_manifests


def load_checkout(
    root: str, paths: Sequence[str], *, default_namespace: str, scopes: ScopeResolver | None = None
) -> tuple[list[KubeObject], list[LoadError]]:
    """Load `paths` (relative to the checkout at `root`). A path that resolves outside the checkout
    (`..`, a symlink) is an error and is not read; sources and error messages name files relative to
    the checkout, never the clone cache's location."""
    real_root = os.path.realpath(root)
    inside: list[str] = []
    outside: list[LoadError] = []
    for path in paths:
        full = os.path.realpath(os.path.join(real_root, path))
        if full == real_root or full.startswith(real_root + os.sep):
            inside.append(os.path.join(root, os.path.relpath(full, real_root)))
        else:
            outside.append(LoadError(path, "spec.source.paths: the path leads out of the repository"))
    objects, errors = load_manifests(inside, default_namespace=default_namespace, scopes=scopes, root=root)
    errors += outside
    prefix = root.rstrip("/") + "/"
    errors = [LoadError(e.file.removeprefix(prefix), e.message.replace(prefix, "")) for e in errors]
    for obj in objects:
        obj.source = obj.source.removeprefix(prefix)
    return objects, errors
