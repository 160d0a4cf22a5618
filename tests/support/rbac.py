"""Kubernetes RBAC and impersonation as the API server applies them, for the test emulator.

`authorize` evaluates Roles, ClusterRoles, RoleBindings and ClusterRoleBindings (as stored objects) for
one request; `impersonated_identity` turns `Impersonate-User`/`Impersonate-Group` headers into the user
and groups a request acts as, and says which `impersonate` rights the requester needs for that, after
the API server's impersonation filter (k8s.io/apiserver/pkg/endpoints/filters/impersonation.go):
a service-account user gets its groups added when no group is named; every named group needs
`impersonate` on `groups`; every non-anonymous user gets `system:authenticated`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

AUTHENTICATED = "system:authenticated"
RBAC_KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Attributes:
    """What a request does: `resource` may be `plural/subresource`; namespace "" for cluster-wide."""

    verb: str
    api_group: str
    resource: str
    namespace: str = ""
    name: str = ""


def service_account_identity(namespace: str, name: str) -> Identity:
    return Identity(f"system:serviceaccount:{namespace}:{name}",
                    ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED))


def _subject_matches(subject: Mapping[str, Any], binding_namespace: str, who: Identity) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name == who.user)
    if kind == "Group":
        return name in who.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return who.user == f"system:serviceaccount:{namespace}:{name}"
    return False


def _rule_allows(rule: Mapping[str, Any], attrs: Attributes) -> bool:
    def has(values: Iterable[str] | None, wanted: str) -> bool:
        listed = list(values or [])
        return "*" in listed or wanted in listed

    names = list(rule.get("resourceNames") or [])
    return (has(rule.get("verbs"), attrs.verb) and has(rule.get("apiGroups"), attrs.api_group)
            and has(rule.get("resources"), attrs.resource) and (not names or attrs.name in names))


def authorize(objects: Sequence[Mapping[str, Any]], who: Identity, attrs: Attributes) -> bool:
    """Whether the RBAC `objects` allow `who` to do `attrs` (as the RBAC authorizer: union of grants)."""
    roles: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for obj in objects:
        if obj.get("kind") in ("Role", "ClusterRole"):
            meta = obj.get("metadata") or {}
            roles[(str(obj["kind"]), str(meta.get("namespace") or ""), str(meta.get("name")))] = list(
                obj.get("rules") or [])
    for binding in objects:
        kind = binding.get("kind")
        if kind not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        namespace = str((binding.get("metadata") or {}).get("namespace") or "")
        if kind == "RoleBinding" and namespace != attrs.namespace:
            continue
        if not any(_subject_matches(s, namespace, who) for s in binding.get("subjects") or []):
            continue
        ref = binding.get("roleRef") or {}
        role_namespace = namespace if ref.get("kind") == "Role" else ""
        rules = roles.get((str(ref.get("kind")), role_namespace, str(ref.get("name"))), [])
        if any(_rule_allows(rule, attrs) for rule in rules):
            return True
    return False


def impersonated_identity(headers: Any) -> tuple[Identity, list[Attributes]] | None:
    """The identity the `Impersonate-*` headers ask for and the `impersonate` checks it needs; None without them.

    `headers` is a multi-dict (aiohttp's CIMultiDictProxy): each `Impersonate-Group` is one header line.
    """
    user = headers.get("Impersonate-User")
    groups = list(headers.getall("Impersonate-Group", []))
    if user is None and not groups:
        return None
    if user is None:
        raise ValueError("requested impersonation of groups without impersonating a user")
    checks: list[Attributes] = []
    parts = user.split(":")
    if len(parts) == 4 and parts[:2] == ["system", "serviceaccount"]:
        checks.append(Attributes("impersonate", "", "serviceaccounts", parts[2], parts[3]))
        if not groups:
            groups = list(service_account_identity(parts[2], parts[3]).groups)
    else:
        checks.append(Attributes("impersonate", "", "users", "", user))
    checks += [Attributes("impersonate", "", "groups", "", g) for g in headers.getall("Impersonate-Group", [])]
    if user != "system:anonymous" and AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return Identity(user, tuple(groups)), checks
