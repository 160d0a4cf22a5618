"""The kopf peering object the operator's replicas meet in, created at startup when it is absent.

kubectl cannot apply a CRD and an object of it in one pass on a fresh cluster, so the install ships
only the peering CRDs (deploy/peering.yaml) and every replica makes the object itself: create, and
take 409 (an older install, or a replica that was faster) as "already there". A missing *CRD* stays an
error: without it kopf cannot keep two replicas from both scanning. Needs create on the peering kind
(deploy/rbac.yaml), nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubedrift.cluster.client import ApiError, KubeClient, resource_path
from kubedrift.model import KubedriftError

GROUP, VERSION = "kopf.dev", "v1"


class PeeringError(KubedriftError):
    """Peering cannot work: its CRD is not installed, or the object can be neither read nor created."""


@dataclass(frozen=True)
class Peering:
    """`ClusterKopfPeering <name>` cluster-wide, `KopfPeering <namespace>/<name>` for one namespace."""

    name: str
    namespace: str | None = None

    @property
    def kind(self) -> str:
        return "KopfPeering" if self.namespace else "ClusterKopfPeering"

    @property
    def plural(self) -> str:
        return "kopfpeerings" if self.namespace else "clusterkopfpeerings"

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    def body(self) -> dict[str, object]:
        metadata: dict[str, object] = {"name": self.name, "labels": {"app.kubernetes.io/name": "kubedrift"}}
        if self.namespace:
            metadata["namespace"] = self.namespace
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": self.kind, "metadata": metadata}


def ensure_peering(client: KubeClient, peering: Peering) -> bool:
    """Create the peering object unless it exists; True when this call created it.

    Raises PeeringError naming the CRD when it is not installed, or what the API server refused.
    """
    collection = resource_path(GROUP, VERSION, peering.plural, peering.namespace)
    try:
        client.request("POST", collection, body=peering.body())
        return True
    except ApiError as exc:
        if exc.conflict:
            return False  # already there: an earlier start, or another replica just now
        if exc.not_found:
            raise PeeringError(_not_found(client, peering, collection)) from None
        if not exc.forbidden:
            raise PeeringError(f"cannot create the peering object {peering}: {exc}") from None
        refused = exc
    try:  # may not create (an RBAC without create): fine as long as someone else made it
        client.get(resource_path(GROUP, VERSION, peering.plural, peering.namespace, peering.name))
    except ApiError:
        raise PeeringError(f"the peering object {peering} does not exist and may not be created: "
                           f"{refused.message} (deploy/rbac.yaml grants create on {peering.plural}.{GROUP})") from None
    return False


def _not_found(client: KubeClient, peering: Peering, collection: str) -> str:
    """Why a create answered 404: the CRD is not served (its collection is unknown too), or the namespace is gone."""
    try:
        client.get(collection, limit="1")
    except ApiError as exc:
        if exc.not_found:
            return (f"the peering CRD {peering.plural}.{GROUP} is not installed: apply deploy/peering.yaml "
                    "(or dist/install.yaml), or run a single replica with --standalone")
        return f"cannot create the peering object {peering}: {exc}"
    return f"cannot create the peering object {peering}: namespace {peering.namespace} not found"
