"""Live objects for a set of desired objects: one LIST per kind and namespace, never one GET each.

With a `LiveCache`, the reader takes the objects from the cache's watches instead (and, for a full
scan, declares to it what the policy needs, so that the watches follow the policy's desired set).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubedrift.cluster.access import ReadAccess
from kubedrift.cluster.cache import LiveCache
from kubedrift.cluster.client import ApiError, KubeClient, resource_path
from kubedrift.cluster.discovery import ApiResource, Discovery
from kubedrift.cluster.watch import ObjectName, Wanted, WatchKey
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


def where(group: str, kind: str, namespace: str) -> str:
    """How errors about the live objects of a kind in a namespace ("" cluster-scoped) name them (`LoadError.file`)."""
    kind_name = f"{kind}.{group}" if group else kind
    return f"{kind_name} in namespace {namespace}" if namespace else f"{kind_name} (cluster-scoped)"


def _objects(resource: ApiResource, items: list[dict[str, Any]]) -> list[KubeObject]:
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

    def __init__(self, client: KubeClient, discovery: Discovery, access: ReadAccess | None = None, *,
                 cache: LiveCache | None = None, owner: str = "", declare: bool = True,
                 sync_timeout: float = 60.0, resync_age: float = 0.0) -> None:
        self._client = client
        self._discovery = discovery
        self._access = access or ReadAccess(namespace="")
        self._cache = cache
        self._owner = owner
        self._declare = declare
        """Each read declares to the cache all that `owner` needs (a full scan); False: a read of a few objects."""
        self._sync_timeout = sync_timeout
        self._resync_age = resync_age
        """A full scan's read LISTs each watched kind again (unless that happened this recently): it catches
        revoked rights and anything a watch missed. Scans waiting at once share one LIST."""

    def served(self, group: str, kind: str, api_version: str) -> ApiResource | None:
        """The resource an object of this manifest apiVersion is read from: its own version when served."""
        manifest_group, _, version = api_version.rpartition("/")
        return self._discovery.resolve(group, kind, version if manifest_group == group and version else None)

    def watch_key(self, resource: ApiResource, namespace: str) -> WatchKey:
        """The watch that holds the objects of a kind in a namespace: with the operator's own rights
        (an admin policy), one cluster-wide watch per kind; otherwise one per namespace, since the identity
        may read no more (per-object filtering keeps only the declared objects either way)."""
        everywhere = self._access.user is None and not self._access.confined
        return WatchKey(self._client.user, resource.group, resource.version, resource.plural, resource.kind,
                        namespace if resource.namespaced and not everywhere else "")

    def _items(self, resource: ApiResource, namespace: str,
               names: Iterable[tuple[str, str]] | None = None) -> list[dict[str, Any]]:
        """The live objects of a kind in a namespace ("" for cluster-scoped): one LIST, or the cache's watch
        (only those of `names`, (namespace, name) pairs, when given)."""
        if self._cache is None:
            body = self._client.get(resource_path(resource.group, resource.version, resource.plural,
                                                  namespace or None))
            return list(body.get("items") or [])
        watch = self._cache.watch(self.watch_key(resource, namespace))
        if watch is None:
            raise ApiError(0, "NotSynced", "the live-object cache does not watch it")
        listed = (watch.wait_listed(watch.resync(self._resync_age), self._sync_timeout) if self._declare
                  else watch.wait_settled(self._sync_timeout))
        if not listed:
            raise ApiError(0, "NotSynced", "the live-object cache could not list it in time")
        failure = watch.failure
        if failure is not None:
            raise failure.as_error()
        if names is None:
            if resource.namespaced and not watch.key.namespace:
                return [o for o in watch.objects() if (o.get("metadata") or {}).get("namespace") == namespace]
            return watch.objects()
        return watch.objects([(ns if resource.namespaced else "", name) for ns, name in names
                              if not resource.namespaced or ns == namespace])

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
        keys = list(keys)
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
        if self._cache is not None and self._declare:
            self._declare_interest(by_version, context_kinds, namespaces_used)
        for group, kind in context_kinds:
            resource = self._discovery.resolve(group, kind)
            if resource is None or (group, kind) in wanted:
                continue
            for ns in sorted(namespaces_used) if resource.namespaced else []:
                try:
                    items = self._items(resource, ns)
                except ApiError as exc:
                    log.info("cannot list %s for context %s: %s", where(group, kind, ns), access.describe(), exc)
                    continue
                result.objects.extend(_objects(resource, items))
        for (group, kind), namespaces in sorted(wanted.items()):
            for ns in sorted(namespaces):
                refused = access.refusal(ns)
                if refused is not None:
                    result.not_compared(group, kind, [ns], where(group, kind, ns), refused)
            namespaces = {ns for ns in namespaces if access.refusal(ns) is None}
            if not namespaces:
                continue
            resource = self._discovery.resolve(group, kind)
            if resource is None:
                result.not_compared(
                    group, kind, namespaces, where(group, kind, ""),
                    f"the cluster serves no resource of kind {kind!r} in API group {group or 'core'!r} "
                    "(is its CRD installed?)")
                continue
            if not resource.namespaced and access.refusal("") is not None:
                result.not_compared(group, kind, namespaces, where(group, kind, ""), access.refusal("") or "")
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
                objects = self._list(result, served, sorted({ns for ns, _ in names}), namespaces, names)
                if len(versions) > 1:
                    mine = names if served.namespaced else {("", name) for _, name in names}
                    objects = [o for o in objects if (o.namespace, o.name) in mine]
                result.objects.extend(objects)
        return result

    def _list(
        self, result: LiveRead, resource: ApiResource, spaces: Sequence[str], all_spaces: set[str],
        names: set[tuple[str, str]],
    ) -> list[KubeObject]:
        group, kind, access = resource.group, resource.kind, self._access
        found: list[KubeObject] = []
        for ns in spaces if resource.namespaced else [""]:
            try:
                items = self._items(resource, ns, names)
            except ApiError as exc:
                targets: Sequence[str] = sorted(all_spaces) if not resource.namespaced else [ns]
                reason = (f"{access.forbidden(exc.message)} ({exc.status} {exc.reason})" if exc.forbidden
                          else f"cannot be listed: {exc}")
                result.not_compared(group, kind, targets, where(group, kind, ns), reason)
                log.warning("cannot list %s %s: %s", where(group, kind, ns), access.describe(), exc)
                continue
            found.extend(_objects(resource, items))
        return found

    def _declare_interest(self, by_version: Mapping[tuple[str, str], Mapping[str, set[tuple[str, str]]]],
                          context_kinds: Iterable[tuple[str, str]], namespaces_used: set[str]) -> None:
        """Tell the cache every watch this read needs, and which objects of each (context kinds: all)."""
        assert self._cache is not None
        access = self._access
        names: dict[WatchKey, set[ObjectName]] = defaultdict(set)
        for (group, kind), versions in by_version.items():
            for version, objects in versions.items():
                resource = self._discovery.resolve(group, kind, version or None)
                if resource is None:
                    continue
                for ns, name in objects:
                    if access.refusal(ns if resource.namespaced else "") is None:
                        names[self.watch_key(resource, ns)].add((ns if resource.namespaced else "", name))
        interest: dict[WatchKey, Wanted] = {k: frozenset(v) for k, v in names.items()}
        for group, kind in context_kinds:
            resource = self._discovery.resolve(group, kind)
            if resource is None or (group, kind) in by_version or not resource.namespaced:
                continue
            for ns in namespaces_used:
                interest[self.watch_key(resource, ns)] = None
        self._cache.interest(self._owner, interest, self._client)
