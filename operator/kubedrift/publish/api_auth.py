"""Bearer-token auth for /api/: TokenReview (who is it?) then SubjectAccessReview (may they?).

Both go to the Kubernetes API through the operator's KubeClient; answers are cached briefly, keyed
by a digest of the token (the token itself is never stored or logged).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubedrift.cluster.client import ApiError, KubeClient
from kubedrift.policy import GROUP

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
CACHE_SECONDS = 30.0
CACHE_MAX = 1024


@dataclass(frozen=True)
class Permission:
    verb: str
    resource: str
    namespace: str = ""
    group: str = GROUP


READ_RECORDS = Permission("list", "driftreports")


def patch_policies(namespace: str = "") -> Permission:
    return Permission("patch", "driftpolicies", namespace)


@dataclass(frozen=True)
class User:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict, hash=False)


class AuthError(Exception):
    """`status` 401 (no or bad token), 403 (not allowed) or 503 (the API server did not answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Authorizer(Protocol):
    async def authorize(self, token: str | None, permission: Permission) -> User: ...


class _TTLCache:
    def __init__(self, ttl: float, size: int) -> None:
        self._ttl, self._size = ttl, size
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            hit = self._items.get(key)
            if hit is None or hit[0] < time.monotonic():
                self._items.pop(key, None)
                return None
            return hit[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            if len(self._items) >= self._size:
                self._items.pop(next(iter(self._items)))
            self._items[key] = (time.monotonic() + self._ttl, value)


class KubeAuthorizer:
    def __init__(self, client: KubeClient, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.client = client
        self._users = _TTLCache(cache_seconds, CACHE_MAX)
        self._decisions = _TTLCache(cache_seconds, CACHE_MAX)

    async def authorize(self, token: str | None, permission: Permission) -> User:
        if not token:
            raise AuthError(401, "missing bearer token (Authorization: Bearer <token>)")
        key = hashlib.sha256(token.encode()).hexdigest()
        user = self._users.get(key)
        if user is None:
            user = await asyncio.to_thread(self._review_token, token)
            self._users.put(key, user)
        if user is False:
            raise AuthError(401, "the Kubernetes API server did not accept the bearer token")
        assert isinstance(user, User)
        allowed = self._decisions.get((key, permission))
        if allowed is None:
            allowed = await asyncio.to_thread(self._review_access, user, permission)
            self._decisions.put((key, permission), allowed)
        if not allowed:
            where = f" in namespace {permission.namespace}" if permission.namespace else ""
            raise AuthError(403, f"user {user.username!r} may not {permission.verb} "
                                 f"{permission.resource}.{permission.group}{where}")
        return user

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            answer = self.client.request("POST", path, body=body)
        except ApiError as exc:
            raise AuthError(503, f"cannot check the token with the Kubernetes API: {exc.status} {exc.reason}") \
                from None
        return answer if isinstance(answer, dict) else {}

    def _review_token(self, token: str) -> User | bool:
        answer = self._post(TOKEN_REVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                            "spec": {"token": token}})
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            return False
        info = status.get("user") or {}
        return User(username=str(info.get("username", "")), uid=str(info.get("uid", "")),
                    groups=tuple(info.get("groups") or ()), extra=dict(info.get("extra") or {}))

    def _review_access(self, user: User, permission: Permission) -> bool:
        attributes = {"group": permission.group, "resource": permission.resource, "verb": permission.verb}
        if permission.namespace:
            attributes["namespace"] = permission.namespace
        spec: dict[str, Any] = {"user": user.username, "groups": list(user.groups), "resourceAttributes": attributes}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = user.extra
        answer = self._post(ACCESS_REVIEWS, {"apiVersion": "authorization.k8s.io/v1",
                                             "kind": "SubjectAccessReview", "spec": spec})
        return bool((answer.get("status") or {}).get("allowed"))
