"""One small JSON client over the kubernetes library: kubeconfig or in-cluster config, raw paths.

Every stage that talks to the API server (live reads here, reports/status/events in publish/)
goes through `KubeClient.request`, so timeouts, errors and auth are handled in one place.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import kubernetes
from kubernetes.client.exceptions import ApiException

from kubedrift.model import KubedriftError

DEFAULT_TIMEOUT = 30.0
POOL_SIZE = 64
"""Connections kept per API server: each open watch holds one for as long as it streams."""
MAX_WATCH_LINE = 16 * 1024 * 1024
"""A watch event larger than this ends the stream (the API server stores objects of at most ~1.5 MiB)."""

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(KubedriftError):
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


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it wraps (urllib3's MaxRetryError keeps the real cause in `reason`)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        todo += [reason if isinstance(reason, BaseException) else None, current.__cause__, current.__context__]


def unreachable_cause(exc: BaseException) -> str:
    """Why no answer came, in words: `connection refused`, `connection timed out`, a TLS failure..."""
    causes = list(_causes(exc))
    for cause in causes:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, socket.gaierror):
            return "host name not resolved"
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed ({cause.reason or type(cause).__name__})"
        if isinstance(cause, (TimeoutError, socket.timeout)) or "Timeout" in type(cause).__name__:
            return "connection timed out"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
    for cause in causes:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror.lower()
    return type(causes[-1]).__name__


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
    def from_environment(
        cls, kubeconfig: str | None = None, timeout: float = DEFAULT_TIMEOUT, *, context: str | None = None
    ) -> KubeClient:
        """KUBECONFIG (or the given path) when set, else in-cluster config, else ~/.kube/config.

        A `context` names a kubeconfig context (in-cluster config is then never used).
        """
        path = kubeconfig or os.environ.get("KUBECONFIG")
        configuration = kubernetes.client.Configuration()
        if path or context:
            kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=configuration
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
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, POOL_SIZE)
        return cls(kubernetes.client.ApiClient(configuration), timeout)

    def _send(self, method: str, path: str, query: dict[str, str] | None, body: Any, content_type: str | None,
              timeout: float | tuple[float, float]) -> Any:
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
            return self.api.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
        except ApiException as exc:
            raise _error_from(int(exc.status or 0), str(exc.reason or "error"), exc.body) from None
        except Exception as exc:  # connection refused, timeouts, TLS: the cluster is unreachable
            raise ApiError(0, "Unreachable",
                           f"cannot reach the Kubernetes API at {self.host}: {unreachable_cause(exc)}") from None

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        response = self._send(method, path, query, body, content_type, self.timeout)
        try:
            response.read()
        except Exception as exc:
            raise ApiError(0, "Unreachable",
                           f"cannot reach the Kubernetes API at {self.host}: {unreachable_cause(exc)}") from None
        if not 200 <= response.status < 300:
            raise _error_from(response.status, str(response.reason or ""), response.data)
        return json.loads(response.data) if response.data else None

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def stream(self, path: str, query: dict[str, str], read_timeout: float) -> WatchStream:
        """Open a streaming GET (a watch): its events as decoded JSON objects, one per line.

        `read_timeout` bounds the quiet between two chunks; a watch asks the server for bookmarks and a
        `timeoutSeconds` shorter than it, so a healthy stream never hits it.
        """
        response = self._send("GET", path, query, None, None, (self.timeout, read_timeout))
        if not 200 <= response.status < 300:
            try:
                data = response.read()
            except Exception:
                data = None
            raise _error_from(response.status, str(response.reason or ""), data)
        return WatchStream(response.response)

    def get(self, path: str, **query: str) -> Any:
        return self.request("GET", path, query=query or None)


class WatchStream:
    """An open watch: iterate its events; `close()` (from any thread) ends the iteration quietly."""

    def __init__(self, response: Any) -> None:
        self._response = response
        self._closed = False

    def __iter__(self) -> Iterator[dict[str, Any]]:
        buffer = bytearray()
        try:
            for chunk in self._response.stream(amt=None, decode_content=False):
                buffer.extend(chunk)
                while (end := buffer.find(b"\n")) != -1:
                    line = bytes(buffer[:end])
                    del buffer[:end + 1]
                    if line.strip():
                        event = json.loads(line)
                        if isinstance(event, dict):
                            yield event
                if len(buffer) > MAX_WATCH_LINE:
                    raise ApiError(0, "BadResponse", f"a watch event exceeds {MAX_WATCH_LINE} bytes")
        except ApiError:
            raise
        except ValueError:
            raise ApiError(0, "BadResponse", "a watch event is not JSON") from None
        except Exception as exc:
            if not self._closed:
                raise ApiError(0, "Unreachable", f"the watch stream broke: {type(exc).__name__}") from None
        finally:
            self.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(Exception):
            self._response.shutdown()  # interrupts a read blocked in another thread
        with contextlib.suppress(Exception):
            self._response.close()


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
