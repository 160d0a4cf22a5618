"""API discovery: which resource (plural, version, scope) serves a kind, built-ins and CRDs alike."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from kubedrift.cluster.client import ApiError, KubeClient
from kubedrift.kinds import BuiltinScopes, is_builtin_group

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiResource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    verbs: frozenset[str]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


class Discovery:
    """Maps (group, kind) to the served resource, preferring each group's preferred version, and
    knows every version served (a manifest's own apiVersion is read when the server serves it).

    Also a `kinds.ScopeResolver` for the diff stage: unknown kinds fall back to the built-in table.
    """

    def __init__(self, client: KubeClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._by_kind: dict[tuple[str, str], ApiResource] = {}
        self._versions: dict[tuple[str, str, str], ApiResource] = {}
        self._crds: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._loaded = False
        self._fallback = BuiltinScopes()
        self.errors: list[str] = []

    def refresh(self) -> None:
        """Read /api and /apis again (CRDs come and go). A group that fails is skipped and noted."""
        found: dict[tuple[str, str], ApiResource] = {}
        versions: dict[tuple[str, str, str], ApiResource] = {}
        errors: list[str] = []
        group_versions: list[tuple[str, str]] = [("", "v1")]
        groups = self._client.get("/apis")
        for group in groups.get("groups", []):
            preferred = (group.get("preferredVersion") or {}).get("version")
            ordered = [preferred] + [v["version"] for v in group.get("versions", []) if v["version"] != preferred]
            group_versions += [(group["name"], v) for v in ordered if v]
        for group_name, version in group_versions:
            path = f"/apis/{group_name}/{version}" if group_name else f"/api/{version}"
            try:
                listing = self._client.get(path)
            except ApiError as exc:
                errors.append(f"discovery of {path}: {exc}")
                continue
            for res in listing.get("resources", []):
                name = str(res.get("name", ""))
                if "/" in name or not res.get("kind"):
                    continue  # subresources
                resource = ApiResource(
                    group=group_name,
                    version=version,
                    plural=name,
                    kind=str(res["kind"]),
                    namespaced=bool(res.get("namespaced")),
                    verbs=frozenset(res.get("verbs") or ()),
                )
                versions.setdefault((group_name, resource.kind, version), resource)
                # an earlier (preferred) version wins for the kind
                found.setdefault((group_name, resource.kind), resource)
        with self._lock:
            self._by_kind = found
            self._versions = versions
            self._crds = {}
            self._loaded = True
            self.errors = errors
        for message in errors:
            log.warning(message)

    def resolve(self, group: str, kind: str, version: str | None = None) -> ApiResource | None:
        """The resource serving the kind in `version` when served, else in the preferred version."""
        if not self._loaded:
            self.refresh()
        with self._lock:
            served = self._versions.get((group, kind, version)) if version else None
            return served or self._by_kind.get((group, kind))

    def crd(self, group: str, kind: str) -> dict[str, Any] | None:
        """The CustomResourceDefinition of a served custom kind (its scope and list keys), or None.

        Read one by one (`<plural>.<group>`) for the kinds a scan compares, never the whole list
        (clusters with many CRDs hold megabytes of schemas); kept until the next refresh.
        """
        resource = self.resolve(group, kind)
        if resource is None or is_builtin_group(group):
            return None
        with self._lock:
            if (group, kind) in self._crds:
                return self._crds[(group, kind)]
        try:
            body = self._client.get(f"{CRD_PATH}/{resource.plural}.{group}")
        except ApiError as exc:
            log.info("cannot read the CRD of %s.%s (its lists compare whole): %s", kind, group, exc)
            body = None
        found = body if isinstance(body, dict) else None
        with self._lock:
            self._crds[(group, kind)] = found
        return found

    def is_namespaced(self, group: str, kind: str) -> bool:
        found = self.resolve(group, kind)
        if found is not None:
            return found.namespaced
        return self._fallback.is_namespaced(group, kind)
