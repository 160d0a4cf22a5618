"""What CustomResourceDefinitions tell the diff: a kind's scope and its lists' merge keys.

CRDs come from the manifests and the snapshot (CLI) or from the cluster (operator). A list the
schema declares `x-kubernetes-list-type: map` is matched by its `x-kubernetes-list-map-keys`,
as the API server's server-side apply does, instead of by position.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubedrift.diff.defaults import ZERO_OMITTED, ZERO_OMITTED_EMBEDDED
from kubedrift.diff.keys import MERGE_KEYS, ListKeys, by_all_fields
from kubedrift.diff.project import Projector
from kubedrift.kinds import is_builtin_group
from kubedrift.model import api_group

CRD_GROUP = "apiextensions.k8s.io"
MAX_SCHEMA_DEPTH = 64
"""A CRD read from Git is untrusted: deeper schemas are not walked."""


def is_crd(body: dict[str, Any]) -> bool:
    return body.get("kind") == "CustomResourceDefinition" and api_group(str(body.get("apiVersion") or "")) == CRD_GROUP


def _list_map_keys(schema: Any, holder: str, found: dict[str, tuple[str, ...]], depth: int = 0) -> None:
    if not isinstance(schema, dict) or depth > MAX_SCHEMA_DEPTH:
        return
    keys = schema.get("x-kubernetes-list-map-keys")
    if not isinstance(keys, list):
        keys = []
    if schema.get("x-kubernetes-list-type") == "map" and keys and holder and all(isinstance(k, str) for k in keys):
        found.setdefault(holder, tuple(keys))
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, sub in properties.items():
            _list_map_keys(sub, str(name), found, depth + 1)
    _list_map_keys(schema.get("items"), holder, found, depth + 1)
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        _list_map_keys(additional, holder, found, depth + 1)


@dataclass
class CrdFacts:
    """Scopes and list keys of the custom kinds whose CRDs were seen, by (group, kind)."""

    cluster_scoped: set[tuple[str, str]] = field(default_factory=set)
    namespaced: set[tuple[str, str]] = field(default_factory=set)
    list_keys: dict[tuple[str, str], dict[str, tuple[str, ...]]] = field(default_factory=dict)
    _merged: dict[tuple[str, str], ListKeys] = field(default_factory=dict, repr=False)
    _projectors: dict[tuple[str, str], Projector] = field(default_factory=dict, repr=False)

    def add(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec")
        if not isinstance(spec, dict):
            return
        names = spec.get("names")
        group, kind = spec.get("group"), names.get("kind") if isinstance(names, dict) else None
        if not isinstance(group, str) or not isinstance(kind, str):
            return
        gk = (group, kind)
        (self.cluster_scoped if spec.get("scope") == "Cluster" else self.namespaced).add(gk)
        found: dict[str, tuple[str, ...]] = {}
        versions = spec.get("versions")
        for version in versions if isinstance(versions, list) else []:
            schema = version.get("schema") if isinstance(version, dict) else None
            if isinstance(schema, dict):
                _list_map_keys(schema.get("openAPIV3Schema"), "", found)
        if found:
            self.list_keys[gk] = found

    def keys_for(self, group: str, kind: str) -> ListKeys:
        """MERGE_KEYS, with the kind's own list-map-keys taking precedence."""
        own = self.list_keys.get((group, kind))
        if not own:
            return MERGE_KEYS
        merged = self._merged.get((group, kind))
        if merged is None:
            merged = self._merged[(group, kind)] = {
                **MERGE_KEYS, **{name: by_all_fields(keys) for name, keys in own.items()}
            }
        return merged


    def projector(self, group: str, kind: str) -> Projector:
        """The projector of a kind: its list keys and the fields whose zero value equals absent."""
        found = self._projectors.get((group, kind))
        if found is None:
            zero_omitted = ZERO_OMITTED if is_builtin_group(group) else ZERO_OMITTED_EMBEDDED
            found = self._projectors[(group, kind)] = Projector(self.keys_for(group, kind), zero_omitted)
        return found


def crd_facts(bodies: Iterable[dict[str, Any]]) -> CrdFacts:
    facts = CrdFacts()
    for body in bodies:
        if body.get("kind") == "CustomResourceDefinition" and is_crd(body):
            facts.add(body)
    return facts
