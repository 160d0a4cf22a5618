"""Built-in knowledge of which kinds are cluster-scoped, for use without a cluster.

With a cluster, discovery (cluster/discovery.py) answers authoritatively; this table serves the
CLI against a snapshot and is the fallback for kinds discovery cannot resolve.
"""

from __future__ import annotations

from typing import Protocol

CLUSTER_SCOPED_KINDS: frozenset[tuple[str, str]] = frozenset(
    {
        ("", "Namespace"),
        ("", "Node"),
        ("", "PersistentVolume"),
        ("", "ComponentStatus"),
        ("rbac.authorization.k8s.io", "ClusterRole"),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding"),
        ("storage.k8s.io", "StorageClass"),
        ("storage.k8s.io", "CSIDriver"),
        ("storage.k8s.io", "CSINode"),
        ("storage.k8s.io", "VolumeAttachment"),
        ("apiextensions.k8s.io", "CustomResourceDefinition"),
        ("apiregistration.k8s.io", "APIService"),
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding"),
        ("scheduling.k8s.io", "PriorityClass"),
        ("networking.k8s.io", "IngressClass"),
        ("node.k8s.io", "RuntimeClass"),
        ("policy", "PodSecurityPolicy"),
        ("certificates.k8s.io", "CertificateSigningRequest"),
        ("flowcontrol.apiserver.k8s.io", "FlowSchema"),
        ("flowcontrol.apiserver.k8s.io", "PriorityLevelConfiguration"),
        ("cert-manager.io", "ClusterIssuer"),
    }
)


BUILTIN_GROUPS: frozenset[str] = frozenset(
    {
        "", "apps", "batch", "autoscaling", "policy", "extensions",
        "admissionregistration.k8s.io", "apiextensions.k8s.io", "apiregistration.k8s.io",
        "authentication.k8s.io", "authorization.k8s.io", "certificates.k8s.io", "coordination.k8s.io",
        "discovery.k8s.io", "events.k8s.io", "flowcontrol.apiserver.k8s.io", "internal.apiserver.k8s.io",
        "networking.k8s.io", "node.k8s.io", "rbac.authorization.k8s.io", "resource.k8s.io",
        "scheduling.k8s.io", "storage.k8s.io", "storagemigration.k8s.io",
    }
)
"""API groups kube-apiserver serves itself; every other group comes from a CRD or an aggregated API."""


def is_builtin_group(group: str) -> bool:
    return group in BUILTIN_GROUPS


class ScopeResolver(Protocol):
    def is_namespaced(self, group: str, kind: str) -> bool: ...


class BuiltinScopes:
    """Answers from CLUSTER_SCOPED_KINDS; any other kind is taken as namespaced."""

    def __init__(self, extra_cluster_scoped: set[tuple[str, str]] | None = None) -> None:
        self._cluster_scoped = CLUSTER_SCOPED_KINDS | frozenset(extra_cluster_scoped or ())

    def is_namespaced(self, group: str, kind: str) -> bool:
        return (group, kind) not in self._cluster_scoped
