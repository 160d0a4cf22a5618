"""REST API (SPEC §3) and /metrics, registered onto the operator's aiohttp application.

Everything under /api/ needs a bearer token the API server accepts and that may list driftreports
(`POST /api/v1/analyze` and `POST /api/v1/hooks/git`: patch driftpolicies). A client address with too
many failed authentications gets 429 with Retry-After, before any TokenReview. Errors are JSON:
`{"status", "error"[, "field"]}` with fixed messages: never the text of an exception from MongoDB or the
Kubernetes API.
Store reads are blocking pymongo calls, so they run in threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from kubedrift.model import KubedriftError
from kubedrift.publish.api_auth import (
    READ_RECORDS,
    AuthError,
    Authorizer,
    FailedAuthLimiter,
    Permission,
    patch_policies,
)
from kubedrift.publish.metrics import CONTENT_TYPE, DriftMetrics
from kubedrift.publish.openapi import document
from kubedrift.publish.scan_trigger import PolicyNotFound, ScanTrigger, pushed_repositories
from kubedrift.store.mongo import StoreUnavailable
from kubedrift.store.queries import QueryError, RecordQuery, parse_scope

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RecordReader(Protocol):
    def list_records(self, query: RecordQuery) -> tuple[list[dict[str, Any]], int]: ...

    def get_record(self, resource_id: str, *, policy: str | None = None, events: int = 50) -> dict[str, Any] | None: ...

    def statistics(self, scope: RecordQuery | None = None) -> dict[str, Any]: ...


class HttpError(KubedriftError):
    """An answer of the REST API other than 2xx: `status`, and the query `field` at fault when there is one."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.field = status, field


def error_response(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"status": status, "error": message}
    if field:
        body["field"] = field
    headers = {"WWW-Authenticate": 'Bearer realm="kubedrift"'} if status == 401 else None
    return web.json_response(body, status=status, headers=headers)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _permission(request: web.Request) -> Permission:
    if request.path in (f"{PREFIX}/analyze", f"{PREFIX}/hooks/git"):
        namespace = request.query.get("policy", "").partition("/")[0]
        return patch_policies(namespace)
    return READ_RECORDS


class _Api:
    def __init__(self, store: RecordReader | None, authorizer: Authorizer, trigger: ScanTrigger | None,
                 limiter: FailedAuthLimiter) -> None:
        self.store, self.authorizer, self.trigger, self.limiter = store, authorizer, trigger, limiter

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/api/"):
            return await handler(request)
        client = request.remote or ""  # the peer address: X-Forwarded-For is the caller's to forge
        wait = self.limiter.retry_after(client)
        if wait is not None:
            response = error_response(429, "too many failed authentications from this address; try again later")
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
            return response
        try:
            await self.authorizer.authorize(_bearer(request), _permission(request))
            return await handler(request)
        except AuthError as exc:
            if exc.status == 401:
                self.limiter.failed(client)
            return error_response(exc.status, exc.message)
        except HttpError as exc:
            return error_response(exc.status, exc.message, exc.field)
        except QueryError as exc:
            return error_response(400, str(exc), exc.field)
        except StoreUnavailable as exc:
            return error_response(503, str(exc))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = error_response(exc.status, exc.reason)
            if "Allow" in exc.headers:  # 405 names the methods the path supports
                response.headers["Allow"] = exc.headers["Allow"]
            return response

    def _reader(self) -> RecordReader:
        if self.store is None:
            raise HttpError(503, "drift history is off: the operator runs without MONGODB_URI")
        return self.store

    async def _page(self, request: web.Request, **fixed: str) -> web.Response:
        allowed: tuple[str, ...] = ("policy", "namespace", "kind", "severity", "limit", "offset")
        if not fixed:
            allowed = (*allowed, "state")
        query = RecordQuery.parse(request.query, allowed=allowed, **fixed)
        items, total = await asyncio.to_thread(self._reader().list_records, query)
        return web.json_response({"items": items, "total": total, "limit": query.limit, "offset": query.offset})

    async def records(self, request: web.Request) -> web.Response:
        return await self._page(request)

    async def active(self, request: web.Request) -> web.Response:
        return await self._page(request, state="active")

    async def resolved(self, request: web.Request) -> web.Response:
        return await self._page(request, state="resolved")

    async def record(self, request: web.Request) -> web.Response:
        resource_id = request.match_info["resourceId"]
        scope = RecordQuery.parse(request.query, allowed=("policy",))
        found = await asyncio.to_thread(self._reader().get_record, resource_id, policy=scope.policy)
        if found is None:
            raise HttpError(404, f"no drift record for {resource_id!r}", "resourceId")
        return web.json_response(found)

    async def statistics(self, request: web.Request) -> web.Response:
        scope = parse_scope(request.query)
        return web.json_response(await asyncio.to_thread(self._reader().statistics, scope))

    def _trigger(self) -> ScanTrigger:
        if self.trigger is None:
            raise HttpError(503, "scans cannot be requested: the operator has no Kubernetes client")
        return self.trigger

    async def analyze(self, request: web.Request) -> web.Response:
        scope = RecordQuery.parse(request.query, allowed=("policy",))
        trigger = self._trigger()
        target = None
        if scope.policy:
            namespace, _, name = scope.policy.partition("/")
            target = (namespace, name)
        try:
            requested = await trigger.request_scan(target)
        except PolicyNotFound as exc:
            raise HttpError(404, str(exc), "policy") from None
        except Exception as exc:
            log.warning("analyze: cannot request a scan: %s", exc)
            raise HttpError(503, "cannot request a scan: the Kubernetes API did not take the request") from None
        return web.json_response({"requested": requested}, status=202)

    async def git_hook(self, request: web.Request) -> web.Response:
        """A Git host's push webhook: fetch and scan now the policies of the pushed repository
        (or the one `?policy=` names)."""
        if request.query.get("policy"):
            return await self.analyze(request)
        RecordQuery.parse(request.query, allowed=("policy",))
        trigger = self._trigger()
        try:
            payload = json.loads(await request.read() or b"null")
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the decoder goes
            raise HttpError(400, "the body is not JSON (a push webhook payload)", "body") from None
        repositories = pushed_repositories(payload)
        if not repositories:
            raise HttpError(400, "the payload names no repository (repository.clone_url, project.git_http_url, ...)"
                                "; or name a policy with ?policy=namespace/name", "body")
        try:
            requested = await trigger.request_scans_of(repositories)
        except Exception as exc:
            log.warning("git hook: cannot request scans: %s", exc)
            raise HttpError(503, "cannot request a scan: the Kubernetes API did not take the request") from None
        return web.json_response({"requested": requested}, status=202)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(document())


def register_api(
    app: web.Application,
    *,
    store: RecordReader | None,
    authorizer: Authorizer,
    trigger: ScanTrigger | None = None,
    metrics: DriftMetrics | None = None,
    limiter: FailedAuthLimiter | None = None,
) -> None:
    """Add /api/v1/* (and /metrics when `metrics` is given) to `app` before it starts."""
    api = _Api(store, authorizer, trigger, limiter or FailedAuthLimiter())
    app.middlewares.append(api.middleware)
    router = app.router
    router.add_get(f"{PREFIX}/openapi.json", api.openapi)
    router.add_get(f"{PREFIX}/drift-records", api.records)
    router.add_get(f"{PREFIX}/drift-records/active", api.active)
    router.add_get(f"{PREFIX}/drift-records/resolved", api.resolved)
    router.add_get(PREFIX + "/drift-records/{resourceId:.+}", api.record)
    router.add_get(f"{PREFIX}/statistics", api.statistics)
    router.add_post(f"{PREFIX}/analyze", api.analyze)
    router.add_post(f"{PREFIX}/hooks/git", api.git_hook)
    if metrics is not None:
        register_metrics(app, metrics)


def register_metrics(app: web.Application, metrics: DriftMetrics) -> None:
    async def serve(request: web.Request) -> web.Response:
        body = await asyncio.to_thread(metrics.exposition)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/metrics", serve)
