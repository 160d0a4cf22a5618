"""API discovery: which resource (plural, version, scope) serves a kind, built-ins and CRDs alike."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from kubedrift.cluster.client import ApiError, KubeClient
from kubedrift.kinds import BuiltinScopes

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


class Discovery:
    """Maps (group, kind) to the served resource, preferring each group's preferred version.

    Also a `kinds.ScopeResolver` for the diff stage: unknown kinds fall back to the built-in table.
    """

    def __init__(self, client: KubeClient) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._by_kind: dict[tuple[str, str], ApiResource] = {}
        self._loaded = False
        self._fallback = BuiltinScopes()
        self.errors: list[str] = []

    def refresh(self) -> None:
        """Read /api and /apis again (CRDs come and go). A group that fails is skipped and noted."""
        found: dict[tuple[str, str], ApiResource] = {}
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
                key = (group_name, str(res["kind"]))
                if key in found:
                    continue  # an earlier (preferred) version already serves this kind
                found[key] = ApiResource(
                    group=group_name,
                    version=version,
                    plural=name,
                    kind=str(res["kind"]),
                    namespaced=bool(res.get("namespaced")),
                    verbs=frozenset(res.get("verbs") or ()),
                )
        with self._lock:
            self._by_kind = found
            self._loaded = True
            self.errors = errors
        for message in errors:
            log.warning(message)

    def resolve(self, group: str, kind: str) -> ApiResource | None:
        if not self._loaded:
            self.refresh()
        with self._lock:
            return self._by_kind.get((group, kind))

    def is_namespaced(self, group: str, kind: str) -> bool:
        found = self.resolve(group, kind)
        if found is not None:
            return found.namespaced
        return self._fallback.is_namespaced(group, kind)
