"""Bearer-token auth for /api/: TokenReview (who is it?) then SubjectAccessReview (may they?).

Both go to the Kubernetes API through the operator's KubeClient. TokenReviews name the operator's
audiences when configured (a token minted for another service is refused) and the answer must say the
token is valid for one of them. Answers are cached briefly in bounded caches keyed by a digest of the
token (the token itself is never stored or logged): accepted tokens for POSITIVE_SECONDS, refused ones
for NEGATIVE_SECONDS in a cache of their own, so a flood of bad tokens never evicts good ones. Clients
that fail to authenticate too often get 429 (FailedAuthLimiter) before any review is asked.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubedrift.cluster.client import ApiError, KubeClient
from kubedrift.model import GROUP, KubedriftError

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
POSITIVE_SECONDS = 10.0
NEGATIVE_SECONDS = 5.0
CACHE_MAX = 1024
FAILED_AUTH_LIMIT = 10
"""Failed authentications one client address may have per FAILED_AUTH_WINDOW before it gets 429."""
FAILED_AUTH_WINDOW = 60.0
LIMITER_MAX_CLIENTS = 10_000


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


class AuthError(KubedriftError):
    """`status` 401 (no or bad token), 403 (not allowed) or 503 (the API server did not answer)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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


class FailedAuthLimiter:
    """Counts failed authentications per client address in a sliding window; bounded memory.

    `retry_after(client)` is the number of seconds until the client may try again, or None.
    """

    def __init__(self, limit: int = FAILED_AUTH_LIMIT, window: float = FAILED_AUTH_WINDOW,
                 max_clients: int = LIMITER_MAX_CLIENTS) -> None:
        self._limit, self._window, self._max_clients = limit, window, max_clients
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> float | None:
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now)
            if times is None or len(times) < self._limit:
                return None
            return max(0.0, times[0] + self._window - now)

    def failed(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now)
            if times is None:
                times = self._failures[client] = deque(maxlen=self._limit)
                while len(self._failures) > self._max_clients:
                    self._failures.popitem(last=False)
            self._failures.move_to_end(client)
            times.append(now)


class KubeAuthorizer:
    def __init__(self, client: KubeClient, *, audiences: Sequence[str] = (),
                 positive_seconds: float = POSITIVE_SECONDS, negative_seconds: float = NEGATIVE_SECONDS) -> None:
        """`audiences`: what TokenReviews ask for; empty means the API server's own audience."""
        self.client = client
        self.audiences = tuple(a for a in audiences if a)
        self._users = _TTLCache(positive_seconds, CACHE_MAX)
        self._refused = _TTLCache(negative_seconds, CACHE_MAX)
        self._decisions = _TTLCache(positive_seconds, CACHE_MAX)

    async def authorize(self, token: str | None, permission: Permission) -> User:
        if not token:
            raise AuthError(401, "missing bearer token (Authorization: Bearer <token>)")
        key = hashlib.sha256(token.encode()).hexdigest()
        user = self._users.get(key)
        if user is None and self._refused.get(key) is None:
            user = await asyncio.to_thread(self._review_token, token)
            if user is None:
                self._refused.put(key, True)
            else:
                self._users.put(key, user)
        if not isinstance(user, User):
            raise AuthError(401, "the Kubernetes API server did not accept the bearer token")
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
            raise AuthError(503, f"cannot check the token with the Kubernetes API (HTTP {exc.status})") from None
        return answer if isinstance(answer, dict) else {}

    def _review_token(self, token: str) -> User | None:
        spec: dict[str, Any] = {"token": token}
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        answer = self._post(TOKEN_REVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                            "spec": spec})
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            return None
        if self.audiences and not set(status.get("audiences") or ()) & set(self.audiences):
            return None  # an API server that ignored the audiences, or a token for someone else
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
