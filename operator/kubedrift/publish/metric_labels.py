"""Which drifted objects get a series of their own in kubedrift_drift_first_seen_timestamp_seconds.

Kinds, namespaces and names come from Git, and a repository may hold any string. Only values the
Kubernetes API itself would accept become label values: names are DNS-1123 subdomains of at most 253
characters (RBAC objects may also use `:`, as in `system:controller:...`), namespaces DNS-1123 labels,
kinds identifiers. And one policy gets at most MAX_SERIES_PER_POLICY such series: series given keep
their place, new drift takes free places in scan order. The drifts left out are counted, by reason,
in kubedrift_drift_series_omitted; kubedrift_drifted_resources counts them all.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from kubedrift.model import ResourceRef, api_group
from kubedrift.names import is_dns_label, is_dns_subdomain

MAX_SERIES_PER_POLICY = 500
INVALID_NAME = "invalid_name"
OVER_LIMIT = "limit"
OMIT_REASONS = (INVALID_NAME, OVER_LIMIT)
RBAC_GROUP = "rbac.authorization.k8s.io"

_RBAC_NAME = re.compile(r"[a-z0-9]([-a-z0-9.:]*[a-z0-9])?")
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]*")


def labelable(ref: ResourceRef) -> bool:
    """True when the drifted object's kind, namespace and name are safe label values."""
    if api_group(ref.api_version) == RBAC_GROUP:
        name_ok = len(ref.name) <= 253 and bool(_RBAC_NAME.fullmatch(ref.name))
    else:
        name_ok = is_dns_subdomain(ref.name)
    return (
        len(ref.kind) <= 63 and bool(_KIND.fullmatch(ref.kind))
        and (ref.namespace == "" or is_dns_label(ref.namespace))
        and name_ok
    )


@dataclass
class SeriesSelection:
    exported: set[str] = field(default_factory=set)
    """Ids of the drifts that have (or get) a series of their own."""
    omitted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OMIT_REASONS, 0))
    """Drifts without one, by reason."""


def select_series(drifts: Sequence[tuple[str, ResourceRef]], exported_before: Collection[str],
                  limit: int = MAX_SERIES_PER_POLICY) -> SeriesSelection:
    """The (resource id, object) drifts of one policy that get a series: valid names only, at most `limit`,
    old ones first."""
    selection = SeriesSelection()
    valid = [rid for rid, ref in drifts if labelable(ref)]
    selection.omitted[INVALID_NAME] = len(drifts) - len(valid)
    kept = [rid for rid in valid if rid in exported_before]
    new = [rid for rid in valid if rid not in exported_before]
    room = max(0, limit - len(kept))
    selection.exported = set(kept[:limit]) | set(new[:room])
    selection.omitted[OVER_LIMIT] = len(valid) - len(selection.exported)
    return selection
