"""DriftReports are trusted only from their owner.

Anyone who may create DriftReports in some namespace can write one that names any policy. Only a report
in the policy's own namespace, owned (ownerReference uid) by that very DriftPolicy, speaks for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kubedrift.model import GROUP


def policy_uids(policies: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    """(namespace, name) -> uid of each DriftPolicy object."""
    uids: dict[tuple[str, str], str] = {}
    for policy in policies:
        meta = policy.get("metadata") or {}
        if meta.get("namespace") and meta.get("name") and meta.get("uid"):
            uids[(str(meta["namespace"]), str(meta["name"]))] = str(meta["uid"])
    return uids


def owner_policy(report: Mapping[str, Any], uids: Mapping[tuple[str, str], str]) -> str | None:
    """`namespace/name` of the DriftPolicy that owns `report` and that `report` names; None if there is none."""
    meta = report.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    named = (report.get("spec") or {}).get("policy")
    for ref in meta.get("ownerReferences") or []:
        if not isinstance(ref, Mapping) or ref.get("kind") != "DriftPolicy":
            continue
        if not str(ref.get("apiVersion", "")).startswith(f"{GROUP}/") or ref.get("name") != named:
            continue
        uid = uids.get((namespace, str(named)))
        if uid and ref.get("uid") == uid:
            return f"{namespace}/{named}"
    return None


def owned_reports(reports: Iterable[Mapping[str, Any]],
                  policies: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The reports whose owner is one of `policies`, in the owner's namespace; forged ones are dropped."""
    uids = policy_uids(policies)
    return [report for report in reports if owner_policy(report, uids) is not None]
