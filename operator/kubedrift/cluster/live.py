"""Live objects for a set of desired objects: one LIST per kind and namespace, never one GET each."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubedrift.cluster.access import ReadAccess
from kubedrift.cluster.client import ApiError, KubeClient, resource_path
from kubedrift.cluster.discovery import ApiResource, Discovery
from kubedrift.model import KubeObject, LoadError, ResourceKey

log = logging.getLogger(__name__)


@dataclass
class LiveRead:
    objects: list[KubeObject] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    unreadable: dict[tuple[str, str, str], str] = field(default_factory=dict)
    """(group, kind, namespace) whose live objects were not read, and why: their desired objects are not compared."""
    crds: list[dict[str, Any]] = field(default_factory=list)
    """CustomResourceDefinitions of the custom kinds read (their scope and list keys, for the diff)."""

    def readable(self, key: ResourceKey) -> bool:
        return (key.group, key.kind, key.namespace) not in self.unreadable

    def reason(self, key: ResourceKey) -> str | None:
        """Why the live twin of `key` was not read (None when it was)."""
        return self.unreadable.get((key.group, key.kind, key.namespace))

    def not_compared(self, group: str, kind: str, namespaces: Iterable[str], where: str, reason: str) -> None:
        for namespace in namespaces:
            self.unreadable[(group, kind, namespace)] = reason
        self.errors.append(LoadError(file=where, message=f"not compared: {reason}"))


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
    """Lists the live twins of desired objects. Read-only: it never writes to what it reads.

    With a `ReadAccess`, namespaces the policy may not read are never asked for, and a 403 names whom
    the API server refused; `client` must then be the identity the access names.
    """

    def __init__(self, client: KubeClient, discovery: Discovery, access: ReadAccess | None = None) -> None:
        self._client = client
        self._discovery = discovery
        self._access = access or ReadAccess(namespace="")

    def read(
        self,
        keys: Iterable[ResourceKey | KubeObject],
        context_kinds: Iterable[tuple[str, str]] = (),
        api_versions: Mapping[ResourceKey, str] | None = None,
    ) -> LiveRead:
        """List the kinds of `keys` (or of desired objects) in their namespaces.

        Each object is read in its manifest's apiVersion (`api_versions`, or the object's own) when
        the server serves it, so that the server converts (an HPA applied as autoscaling/v1 is read
        as v1); otherwise in the preferred version.
        `context_kinds` (group, kind) are listed too in the same namespaces, quietly: objects that
        only inform the comparison (e.g. HorizontalPodAutoscalers), whose absence is no error.
        """
        wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
        by_version: dict[tuple[str, str], dict[str, set[tuple[str, str]]]] = defaultdict(lambda: defaultdict(set))
        for item in keys:
            key = item.key if isinstance(item, KubeObject) else item
            api_version = item.api_version if isinstance(item, KubeObject) else (api_versions or {}).get(key, "")
            wanted[(key.group, key.kind)].add(key.namespace)
            group, _, version = api_version.rpartition("/")
            by_version[(key.group, key.kind)][version if group == key.group else ""].add((key.namespace, key.name))
        result = LiveRead()
        access = self._access
        namespaces_used = {ns for spaces in wanted.values() for ns in spaces if ns and access.refusal(ns) is None}
        for group, kind in context_kinds:
            resource = self._discovery.resolve(group, kind)
            if resource is None or (group, kind) in wanted:
                continue
            for ns in sorted(namespaces_used):
                try:
                    body = self._client.get(resource_path(resource.group, resource.version, resource.plural, ns))
                except ApiError as exc:
                    log.info("cannot list %s for context %s: %s", _where(group, kind, ns), access.describe(), exc)
                    continue
                result.objects.extend(_objects(resource, body))
        for (group, kind), namespaces in sorted(wanted.items()):
            for ns in sorted(namespaces):
                refused = access.refusal(ns)
                if refused is not None:
                    result.not_compared(group, kind, [ns], _where(group, kind, ns), refused)
            namespaces = {ns for ns in namespaces if access.refusal(ns) is None}
            if not namespaces:
                continue
            resource = self._discovery.resolve(group, kind)
            if resource is None:
                result.not_compared(
                    group, kind, namespaces, _where(group, kind, ""),
                    f"the cluster serves no resource of kind {kind!r} in API group {group or 'core'!r} "
                    "(is its CRD installed?)")
                continue
            if not resource.namespaced and access.refusal("") is not None:
                result.not_compared(group, kind, namespaces, _where(group, kind, ""), access.refusal("") or "")
                continue
            crd = self._discovery.crd(group, kind)
            if crd is not None:
                result.crds.append(crd)
            # One listing per served version the manifests use; each object from its own version's.
            versions: dict[str, tuple[ApiResource, set[tuple[str, str]]]] = {}
            for version, names in by_version[(group, kind)].items():
                served = self._discovery.resolve(group, kind, version or None) or resource
                versions.setdefault(served.version, (served, set()))[1].update(
                    (ns, name) for ns, name in names if ns in namespaces)
            for served, names in versions.values():
                objects = self._list(result, served, sorted({ns for ns, _ in names}), namespaces)
                if len(versions) > 1:
                    mine = names if served.namespaced else {("", name) for _, name in names}
                    objects = [o for o in objects if (o.namespace, o.name) in mine]
                result.objects.extend(objects)
        return result

    def _list(
        self, result: LiveRead, resource: ApiResource, spaces: Sequence[str], all_spaces: set[str]
    ) -> list[KubeObject]:
        group, kind, access = resource.group, resource.kind, self._access
        found: list[KubeObject] = []
        for ns in spaces if resource.namespaced else [""]:
            path = resource_path(resource.group, resource.version, resource.plural, ns or None)
            try:
                body = self._client.get(path)
            except ApiError as exc:
                targets: Sequence[str] = sorted(all_spaces) if not resource.namespaced else [ns]
                reason = (f"{access.forbidden(exc.message)} ({exc.status} {exc.reason})" if exc.forbidden
                          else f"cannot be listed: {exc}")
                result.not_compared(group, kind, targets, _where(group, kind, ns), reason)
                log.warning("cannot list %s %s: %s", _where(group, kind, ns), access.describe(), exc)
                continue
            found.extend(_objects(resource, body))
        return found
