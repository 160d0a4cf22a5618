"""An API emulator that also answers TokenReview and SubjectAccessReview, for tests of the REST API's auth."""

from __future__ import annotations

from typing import Any

import aiohttp.web
from kmock._internal import enums, rendering
from tests.support.emulator import ApiEmulator

USERS = {"reader-token": ("alice", ["readers"]), "admin-token": ("root", ["admins"]),
         "stranger-token": ("bob", ["nobody"]), "kubedrift-audience-token": ("carol", ["readers"])}
"""Bearer tokens the emulated API server accepts, and the user (name, groups) each belongs to."""
API_SERVER_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
TOKEN_AUDIENCES = {"kubedrift-audience-token": ["kubedrift"]}
"""Audiences a token was minted for (`kubectl create token --audience`); others: the API server's own."""
GRANTS = {("alice", "list", "driftreports"), ("root", "list", "driftreports"), ("root", "patch", "driftpolicies"),
          ("carol", "list", "driftreports")}
"""(user, verb, resource) in group kubedrift.dev that SubjectAccessReviews allow."""
READER = {"Authorization": "Bearer reader-token"}
ADMIN = {"Authorization": "Bearer admin-token"}


class ReviewingEmulator(ApiEmulator):  # type: ignore[misc]
    """Answers the reviews like an API server with USERS/GRANTS; keeps every review body asked."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.reviews: list[dict[str, Any]] = []

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is not None and request.method == enums.method.POST and res.plural in (
                "tokenreviews", "subjectaccessreviews"):
            body = request.data if isinstance(request.data, dict) else {}
            self.reviews.append(body)
            spec = body.get("spec") or {}
            if res.plural == "tokenreviews":
                token = str(spec.get("token"))
                user = USERS.get(token)
                # As kube-apiserver: the token must be valid for one of the audiences asked (default: its own).
                asked = spec.get("audiences") or [API_SERVER_AUDIENCE]
                common = [a for a in asked if a in TOKEN_AUDIENCES.get(token, [API_SERVER_AUDIENCE])]
                status: dict[str, Any] = {"authenticated": False, "error": "invalid bearer token"}
                if user and common:
                    status = {"authenticated": True, "audiences": common,
                              "user": {"username": user[0], "uid": user[0] + "-uid", "groups": user[1]}}
            else:
                attrs = spec.get("resourceAttributes") or {}
                allowed = attrs.get("group") == "kubedrift.dev" and (
                    spec.get("user"), attrs.get("verb"), attrs.get("resource")) in GRANTS
                status = {"allowed": allowed}
            return aiohttp.web.json_response({**body, "status": status}, status=201)
        return await super()._handle(request)
