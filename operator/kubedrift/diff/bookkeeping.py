"""Metadata GitOps tools add to every object they apply, on top of what Git declares.

Such a label or annotation is owned by the tool's applier (server-side apply) or sits in the
last-applied-configuration (client-side apply), yet Git never declared it: it is no evidence of a
field removed from Git. Declared in Git, it is compared like any other field.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubedrift.diff.keys import Component

BOOKKEEPING_PREFIXES: dict[str, tuple[str, ...]] = {
    "labels": (
        # Flux kustomize-controller labels everything it applies with the Kustomization's
        # name/namespace (kustomize.toolkit.fluxcd.io/name, .../namespace; fluxcd/kustomize-controller
        # docs/spec/v1/kustomizations.md), helm-controller likewise (helm.toolkit.fluxcd.io/name, ...).
        "kustomize.toolkit.fluxcd.io/",
        "helm.toolkit.fluxcd.io/",
    ),
    "annotations": (
        "kustomize.toolkit.fluxcd.io/",  # e.g. kustomize.toolkit.fluxcd.io/checksum (Flux v0.x)
        "helm.toolkit.fluxcd.io/",
        # PipeCD's piped annotates what it applies (pipecd.dev/managed-by, /piped, /application,
        # /commit-hash, /resource-key, ...): seen in the last-applied-configuration of a live object
        # in pipe-cd/pipecd pkg/app/piped/platformprovider/kubernetes/testdata/diff_ignore_missing_fields.yaml.
        "pipecd.dev/",
    ),
}
BOOKKEEPING_KEYS: dict[str, frozenset[str]] = {
    "labels": frozenset(
        {
            # Argo CD label tracking (the default before v3) and annotation+label tracking set the
            # instance label to the Application's name (argo-cd docs user-guide/resource_tracking).
            "app.kubernetes.io/instance",
            # Helm 3 marks every release object (helm pkg/action/validate.go setMetadataVisitor).
            "app.kubernetes.io/managed-by",
        }
    ),
    "annotations": frozenset(
        {
            "argocd.argoproj.io/tracking-id",  # Argo CD annotation tracking (default since v3)
            "argocd.argoproj.io/installation-id",  # Argo CD installationID setting
            "meta.helm.sh/release-name",  # Helm 3 release ownership
            "meta.helm.sh/release-namespace",
        }
    ),
}


def is_bookkeeping(path: Sequence[Component]) -> bool:
    """`metadata.labels.<key>` / `metadata.annotations.<key>` that a GitOps tool adds by itself."""
    if len(path) != 3 or path[0] != "metadata" or not isinstance(path[2], str):
        return False
    section, key = path[1], path[2]
    if not isinstance(section, str):
        return False
    return key in BOOKKEEPING_KEYS.get(section, ()) or key.startswith(BOOKKEEPING_PREFIXES.get(section, ()))
