"""`POST /api/v1/analyze` and `/api/v1/hooks/git`: ask for a scan now (which fetches Git first) by stamping
the policy annotation the operator watches."""

from __future__ import annotations

import asyncio
import datetime
import re
from collections.abc import Collection, Iterator
from typing import Any, Protocol

from kubedrift.cluster.client import MERGE_PATCH, ApiError, KubeClient, resource_path
from kubedrift.model import GROUP, POLICY_PLURAL, SCAN_REQUEST_ANNOTATION, VERSION, KubedriftError
from kubedrift.timestamps import format_time


class PolicyNotFound(KubedriftError, LookupError):
    pass


class ScanTrigger(Protocol):
    async def request_scan(self, policy: tuple[str, str] | None) -> list[str]:
        """Request scans of one policy (namespace, name) or of all; returns the `ns/name` ids requested."""
        ...

    async def request_scans_of(self, repositories: Collection[str]) -> list[str]:
        """Request scans of the policies whose source is one of these repositories (`repository_identity`)."""
        ...


_SCP_LIKE = re.compile(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.+)$")
MAX_URL = 2048


def repository_identity(url: str) -> str:
    """One spelling per repository, whatever the transport: `host/path` in lower case, without port,
    user, `.git` or slashes at the end (`git@github.com:org/app.git` = `https://github.com/org/App`)."""
    text = url.strip()
    scp = _SCP_LIKE.match(text) if "://" not in text else None
    if scp:
        host, path = scp.group(1), scp.group(2)
    else:
        rest = text.split("://", 1)[-1]
        authority, _, path = rest.partition("/")
        host = authority.rpartition("@")[2].split(":", 1)[0]
    path = path.strip("/")
    if path.endswith(".git"):
        path = path[:-4]
    return f"{host}/{path}".lower()


_URL_FIELDS = {
    "repository": ("clone_url", "ssh_url", "git_url", "html_url", "url", "git_http_url", "git_ssh_url"),
    "project": ("git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url"),
}


def pushed_repositories(payload: Any) -> set[str]:
    """The repositories a Git host's push webhook names (GitHub, Gitea/Forgejo, GitLab), as identities."""
    found: set[str] = set()
    if not isinstance(payload, dict):
        return found
    for section, fields in _URL_FIELDS.items():
        block = payload.get(section)
        if isinstance(block, dict):
            found |= {repository_identity(v) for v in _strings(block, fields)}
    return found


def _strings(block: dict[str, Any], fields: tuple[str, ...]) -> Iterator[str]:
    for name in fields:
        value = block.get(name)
        if isinstance(value, str) and 0 < len(value) <= MAX_URL:
            yield value


class AnnotationScanTrigger:
    def __init__(self, client: KubeClient, namespace: str | None = None) -> None:
        self.client = client
        self.namespace = namespace
        """Only policies of this namespace (the operator's --namespace), or all when None."""

    async def request_scan(self, policy: tuple[str, str] | None) -> list[str]:
        return await asyncio.to_thread(self._request, policy)

    async def request_scans_of(self, repositories: Collection[str]) -> list[str]:
        return await asyncio.to_thread(self._request, None, frozenset(repositories))

    def _request(self, policy: tuple[str, str] | None, repositories: frozenset[str] | None = None) -> list[str]:
        stamp = format_time(datetime.datetime.now(datetime.UTC), milliseconds=True)
        if policy is not None:
            targets = [policy]
        else:
            listed = self.client.get(resource_path(GROUP, VERSION, POLICY_PLURAL, self.namespace))
            targets = [(str(i["metadata"]["namespace"]), str(i["metadata"]["name"]))
                       for i in (listed or {}).get("items") or []
                       if repositories is None or _source_identity(i) in repositories]
        done = []
        for namespace, name in targets:
            patch = {"metadata": {"annotations": {SCAN_REQUEST_ANNOTATION: stamp}}}
            try:
                self.client.request("PATCH", resource_path(GROUP, VERSION, POLICY_PLURAL, namespace, name), body=patch,
                                    content_type=MERGE_PATCH)
            except ApiError as exc:
                if exc.not_found and policy is not None:
                    raise PolicyNotFound(f"DriftPolicy {namespace}/{name} not found") from None
                if not exc.not_found:
                    raise
                continue
            done.append(f"{namespace}/{name}")
        return done


def _source_identity(policy: dict[str, Any]) -> str | None:
    url = ((policy.get("spec") or {}).get("source") or {}).get("repoURL")
    return repository_identity(url) if isinstance(url, str) and len(url) <= MAX_URL else None
