"""Who reads the cluster for a DriftPolicy, and where (SPEC §3 Tenancy).

- A policy that names `spec.serviceAccountName` reads as `system:serviceaccount:<its namespace>:<name>`
  (impersonation): the cluster's RBAC decides what it sees.
- Otherwise a policy in an admin namespace reads with the operator's own identity, anywhere.
- Otherwise, with a default service account configured (lockdown, as Flux's `--default-service-account`),
  the policy impersonates that account of its own namespace.
- Otherwise the policy reads with the operator's identity, but only objects in its own namespace.

Every read done for a policy (live objects, discovery, autoscalers, its git credentials Secret) goes through
the `IdentityView` of its `ReadAccess`. Writes of its DriftReports, status and events stay with the operator.
"""

from __future__ import annotations

import datetime
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from kubedrift.cluster.client import ApiError, KubeClient, resource_path
from kubedrift.cluster.discovery import Discovery
from kubedrift.model import KubedriftError
from kubedrift.names import is_dns_label, is_dns_subdomain

DEFAULT_ADMIN_NAMESPACE = "kubedrift"
OUTSIDE_NAMESPACE = "outside the policy's namespace; set spec.serviceAccountName"
CLUSTER_SCOPED = "cluster-scoped, " + OUTSIDE_NAMESPACE
DISCOVERY_MAX_AGE = 30.0
DISCOVERY_MIN_AGE = 5.0
MAX_IDENTITIES = 256



def service_account_user(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


@dataclass(frozen=True)
class ReadAccess:
    """How the reads for one policy are done: as whom, and which namespaces they may touch."""

    namespace: str
    """The policy's namespace."""
    user: str | None = None
    """The impersonated user; None reads with the operator's own identity."""
    confined: bool = False
    """Only objects in the policy's own namespace (the operator's identity, no service account)."""

    def refusal(self, namespace: str) -> str | None:
        """Why objects in `namespace` ("" for cluster-scoped ones) are not read for this policy; None if they are."""
        if not self.confined or namespace == self.namespace:
            return None
        return CLUSTER_SCOPED if not namespace else OUTSIDE_NAMESPACE

    def forbidden(self, server_message: str = "") -> str:
        """The reason for an object the API server refused to show (403), given the server's message."""
        if self.user and "cannot impersonate" in server_message:
            return (f"the operator may not impersonate {self.user} "
                    "(grant it impersonate on serviceaccounts, see deploy/rbac.yaml)")
        if self.user:
            return f"forbidden for {self.user}"
        return "forbidden (RBAC does not allow reading it)"

    def describe(self) -> str:
        if self.user:
            return f"as {self.user}"
        return f"as the operator, namespace {self.namespace} only" if self.confined else "as the operator"


@dataclass(frozen=True)
class Tenancy:
    """The operator-wide tenancy settings (`--admin-namespaces`, `--default-service-account`)."""

    admin_namespaces: frozenset[str] = frozenset({DEFAULT_ADMIN_NAMESPACE})
    default_service_account: str | None = None

    @classmethod
    def parse(cls, admin_namespaces: str, default_service_account: str | None = None) -> Tenancy:
        """From the flag values; an error names the flag. An empty admin list means no admin namespace."""
        names = [n.strip() for n in admin_namespaces.split(",") if n.strip()]
        for name in names:
            if not is_dns_label(name):
                raise ValueError(f"--admin-namespaces: {name!r} is not a namespace name")
        account = (default_service_account or "").strip() or None
        if account is not None and not is_dns_subdomain(account):
            raise ValueError(f"--default-service-account: {account!r} is not a service account name")
        return cls(frozenset(names), account)

    def access_for(self, namespace: str, service_account_name: str | None = None) -> ReadAccess:
        if service_account_name:
            return ReadAccess(namespace, user=service_account_user(namespace, service_account_name))
        if namespace in self.admin_namespaces:
            return ReadAccess(namespace)
        if self.default_service_account:
            return ReadAccess(namespace, user=service_account_user(namespace, self.default_service_account))
        return ReadAccess(namespace, confined=True)


@dataclass
class IdentityView:
    """A client acting as one identity, and what discovery showed it (refreshed now and then)."""

    client: KubeClient
    discovery: Discovery
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _discovered_at: datetime.datetime | None = None

    def refresh_discovery(self, force: bool = False) -> None:
        """Read discovery again when older than 30 s (5 s when `force`d: a kind was not found)."""
        with self._lock:
            now = datetime.datetime.now(datetime.UTC)
            if self._discovered_at is not None and (now - self._discovered_at).total_seconds() < (
                    DISCOVERY_MIN_AGE if force else DISCOVERY_MAX_AGE):
                return
            self.discovery.refresh()
            self._discovered_at = now


class SecretUnreadable(KubedriftError):
    """Why a Secret read for a policy could not be read: `not found`, `cannot be read: ...` (never its content)."""


def read_secret(view: IdentityView, access: ReadAccess, name: str) -> dict[str, Any]:
    """Secret `name` of the policy's namespace, read through the view of the policy's identity."""
    try:
        secret = view.client.get(resource_path("", "v1", "secrets", access.namespace, name))
    except ApiError as exc:
        if exc.not_found:
            raise SecretUnreadable("not found") from None
        if exc.forbidden:
            raise SecretUnreadable(f"cannot be read: {access.forbidden(exc.message)}") from None
        raise SecretUnreadable(f"cannot be read: {exc.status} {exc.reason}") from None
    return secret if isinstance(secret, dict) else {}


class ClusterViews:
    """One `IdentityView` per identity, all over the operator client's connection pool (least recently used go)."""

    def __init__(self, client: KubeClient, max_identities: int = MAX_IDENTITIES) -> None:
        self._client = client
        self._max = max_identities
        self._lock = threading.Lock()
        self._views: OrderedDict[str | None, IdentityView] = OrderedDict()

    def view(self, access: ReadAccess) -> IdentityView:
        with self._lock:
            found = self._views.get(access.user)
            if found is None:
                client = self._client if access.user is None else self._client.impersonating(access.user)
                found = IdentityView(client, Discovery(client))
                self._views[access.user] = found
                while len(self._views) > self._max:
                    self._views.popitem(last=False)
            self._views.move_to_end(access.user)
            return found
