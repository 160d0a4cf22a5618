"""One small JSON client over the kubernetes library: kubeconfig or in-cluster config, raw paths.

Every stage that talks to the API server (live reads here, reports/status/events in publish/)
goes through `KubeClient.request`, so timeouts, errors and auth are handled in one place.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import quote

import kubernetes
from kubernetes.client.exceptions import ApiException

DEFAULT_TIMEOUT = 30.0

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    """A non-2xx answer from the API server (or no answer at all: status 0)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}" if status else message)
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def forbidden(self) -> bool:
        return self.status == 403

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def _error_from(status: int, reason: str, data: bytes | str | None) -> ApiError:
    message = reason
    try:
        body = json.loads(data or b"")
        if isinstance(body, dict) and body.get("message"):
            message = str(body["message"])
            reason = str(body.get("reason") or reason)
    except ValueError:
        pass
    return ApiError(status, reason, message)


class KubeClient:
    """Synchronous JSON requests by path; thread-safe (each scan runs in a worker thread).

    `impersonating(user)` gives a view that acts as another user over the same connection pool.
    """

    def __init__(self, api_client: Any, timeout: float = DEFAULT_TIMEOUT, *, user: str | None = None) -> None:
        self.api = api_client
        self.timeout = timeout
        self.user = user
        """The impersonated user name; None for the client's own identity."""

    def impersonating(self, user: str) -> KubeClient:
        """A view whose requests act as `user` (header `Impersonate-User`); shares this client's pool.

        No `Impersonate-Group` is sent: for a service account the API server adds its groups
        (`system:serviceaccounts`, `system:serviceaccounts:<ns>`, `system:authenticated`) itself, and
        naming groups would need `impersonate` on `groups`, a right that reaches `system:masters`.
        """
        return KubeClient(self.api, self.timeout, user=user)

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> KubeClient:
        """KUBECONFIG (or the given path) when set, else in-cluster config, else ~/.kube/config."""
        path = kubeconfig or os.environ.get("KUBECONFIG")
        configuration = kubernetes.client.Configuration()
        if path:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, client_configuration=configuration
            )
        else:
            try:
                kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
        return cls(kubernetes.client.ApiClient(configuration), timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        method, url, headers, body, _ = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        if self.user is not None:
            headers["Impersonate-User"] = self.user  # after serialization: the shared ApiClient stays as it is
        try:
            response = self.api.call_api(method, url, header_params=headers, body=body,
                                         _request_timeout=self.timeout)
            response.read()
        except ApiException as exc:
            raise _error_from(int(exc.status or 0), str(exc.reason or "error"), exc.body) from None
        except Exception as exc:  # connection refused, timeouts, TLS: the cluster is unreachable
            raise ApiError(0, "Unreachable", f"cannot reach the Kubernetes API: {type(exc).__name__}") from None
        if not 200 <= response.status < 300:
            raise _error_from(response.status, str(response.reason or ""), response.data)
        return json.loads(response.data) if response.data else None

    def get(self, path: str, **query: str) -> Any:
        return self.request("GET", path, query=query or None)


def resource_path(group: str, version: str, plural: str, namespace: str | None = None, name: str | None = None,
                  subresource: str | None = None) -> str:
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    if namespace:
        base += f"/namespaces/{quote(namespace, safe='')}"
    base += f"/{plural}"
    if name:
        base += f"/{quote(name, safe='')}"
    if subresource:
        base += f"/{subresource}"
    return base
