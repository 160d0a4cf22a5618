"""Entry point of the diff stage (being written)."""

from __future__ import annotations

from collections.abc import Sequence

from kubedrift.kinds import ScopeResolver
from kubedrift.model import DiffSettings, KubeObject, ScanResult


def compare_objects(
    desired: Sequence[KubeObject],
    live: Sequence[KubeObject],
    settings: DiffSettings,
    *,
    scopes: ScopeResolver | None = None,
) -> ScanResult:
    """Compare every desired object with its live twin (matched by group/kind/namespace/name).

    Live objects Git does not declare are ignored. Desired objects are expected to carry their
    namespace already (source/ fills in the default). Returns drifts sorted by resource id.
    """
    raise NotImplementedError
