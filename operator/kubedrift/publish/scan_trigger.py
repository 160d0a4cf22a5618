"""`POST /api/v1/analyze`: ask for a scan now by stamping the policy annotation the operator watches."""

from __future__ import annotations

import asyncio
import datetime
from typing import Protocol

from kubedrift.cluster.client import MERGE_PATCH, ApiError, KubeClient, resource_path
from kubedrift.model import GROUP, POLICY_PLURAL, SCAN_REQUEST_ANNOTATION, VERSION, KubedriftError


class PolicyNotFound(KubedriftError, LookupError):
    pass


class ScanTrigger(Protocol):
    async def request_scan(self, policy: tuple[str, str] | None) -> list[str]:
        """Request scans of one policy (namespace, name) or of all; returns the `ns/name` ids requested."""
        ...


class AnnotationScanTrigger:
    def __init__(self, client: KubeClient, namespace: str | None = None) -> None:
        self.client = client
        self.namespace = namespace
        """Only policies of this namespace (the operator's --namespace), or all when None."""

    async def request_scan(self, policy: tuple[str, str] | None) -> list[str]:
        return await asyncio.to_thread(self._request, policy)

    def _request(self, policy: tuple[str, str] | None) -> list[str]:
        stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if policy is not None:
            targets = [policy]
        else:
            listed = self.client.get(resource_path(GROUP, VERSION, POLICY_PLURAL, self.namespace))
            targets = [(str(i["metadata"]["namespace"]), str(i["metadata"]["name"]))
                       for i in (listed or {}).get("items") or []]
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
