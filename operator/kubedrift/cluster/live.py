"""Live objects for a set of desired objects: one LIST per kind and namespace, never one GET each."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubedrift.cluster.client import ApiError, KubeClient, resource_path
from kubedrift.cluster.discovery import ApiResource, Discovery
from kubedrift.model import KubeObject, LoadError, ResourceKey

log = logging.getLogger(__name__)


@dataclass
class LiveRead:
    objects: list[KubeObject] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    unreadable: set[tuple[str, str, str]] = field(default_factory=set)
    """(group, kind, namespace) that could not be listed: their desired objects are not compared."""

    def readable(self, key: ResourceKey) -> bool:
        return (key.group, key.kind, key.namespace) not in self.unreadable


def _where(group: str, kind: str, namespace: str) -> str:
    kind_name = f"{kind}.{group}" if group else kind
    return f"{kind_name} in namespace {namespace}" if namespace else f"{kind_name} (cluster-scoped)"


def _objects(resource: ApiResource, listing: dict[str, Any]) -> list[KubeObject]:
    items = listing.get("items") or []
    for item in items:
        # List items often lack apiVersion/kind; the list's resource tells them.
        item.setdefault("apiVersion", resource.api_version)
        item.setdefault("kind", resource.kind)
    return [KubeObject(item, source="cluster") for item in items]


class LiveReader:
    """Lists the live twins of desired objects. Read-only: it never writes to what it reads."""

    def __init__(self, client: KubeClient, discovery: Discovery) -> None:
        self._client = client
        self._discovery = discovery

    def read(
        self, keys: Iterable[ResourceKey | KubeObject], context_kinds: Iterable[tuple[str, str]] = ()
    ) -> LiveRead:
        """List the kinds of `keys` (or of desired objects) in their namespaces.

        `context_kinds` (group, kind) are listed too in the same namespaces, quietly: objects that
        only inform the comparison (e.g. HorizontalPodAutoscalers), whose absence is no error.
        """
        wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
        for item in keys:
            key = item.key if isinstance(item, KubeObject) else item
            wanted[(key.group, key.kind)].add(key.namespace)
        result = LiveRead()
        namespaces_used = {ns for spaces in wanted.values() for ns in spaces if ns}
        for group, kind in context_kinds:
            resource = self._discovery.resolve(group, kind)
            if resource is None or (group, kind) in wanted:
                continue
            for ns in sorted(namespaces_used):
                try:
                    body = self._client.get(resource_path(resource.group, resource.version, resource.plural, ns))
                except ApiError as exc:
                    log.info("cannot list %s for context: %s", _where(group, kind, ns), exc)
                    continue
                result.objects.extend(_objects(resource, body))
        for (group, kind), namespaces in sorted(wanted.items()):
            resource = self._discovery.resolve(group, kind)
            if resource is None:
                for ns in sorted(namespaces):
                    result.unreadable.add((group, kind, ns))
                result.errors.append(LoadError(
                    file=_where(group, kind, ""),
                    message=f"the cluster serves no resource of kind {kind!r} in API group {group or 'core'!r} "
                            "(is its CRD installed?)",
                ))
                continue
            listed = sorted(namespaces) if resource.namespaced else [""]
            for ns in listed:
                path = resource_path(resource.group, resource.version, resource.plural, ns or None)
                try:
                    body = self._client.get(path)
                except ApiError as exc:
                    targets: Sequence[str] = sorted(namespaces) if not resource.namespaced else [ns]
                    for target in targets:
                        result.unreadable.add((group, kind, target))
                    hint = " (RBAC does not allow the operator to list it)" if exc.forbidden else ""
                    result.errors.append(LoadError(file=_where(group, kind, ns), message=f"{exc}{hint}"))
                    log.warning("cannot list %s: %s", _where(group, kind, ns), exc)
                    continue
                result.objects.extend(_objects(resource, body))
        return result
