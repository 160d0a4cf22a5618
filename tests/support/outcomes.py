"""Successive scan outcomes of one policy, built by the real `verdicts.judge`, for tests of the publishers.

`Scans` carries the active drift from one outcome to the next, as the DriftReports carry it in the operator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from kubedrift.model import (
    ActiveDrift,
    LoadError,
    PolicyRef,
    Remediation,
    ResourceDrift,
    ScanOutcome,
    ScanResult,
    Stall,
)
from kubedrift.verdicts import judge, stalled


class Scans:
    def __init__(self, namespace: str = "ops", name: str = "shop") -> None:
        self.policy = PolicyRef(namespace, name, "uid-1")
        self.active: dict[str, ActiveDrift] = {}

    def scan(
        self,
        *drifts: ResourceDrift,
        at: datetime,
        revision: str = "r",
        unread: Mapping[str, str] | None = None,
        undeclared: Iterable[str] = (),
        incomplete: str | None = None,
        interval_seconds: float | None = None,
        remediations: Mapping[str, Remediation] | None = None,
    ) -> ScanOutcome:
        """A scan that found `drifts`; every other resource active before was compared clean, unless it is
        in `unread` (not compared), in `undeclared` (gone from Git) or `incomplete` says the manifests were
        not all read."""
        unread = dict(unread or {})
        gone = set(undeclared)
        drifted = {d.id for d in drifts}
        clean = set() if incomplete else {rid for rid in self.active if rid not in drifted | set(unread) | gone}
        result = ScanResult(resources=len(drifted | clean), drifts=sorted(drifts, key=lambda d: d.id),
                            compared=drifted | clean)
        errors = [LoadError(rid, reason) for rid, reason in unread.items()]
        if incomplete:
            errors.append(LoadError("broken.yaml", incomplete))
        outcome = judge(self.policy, finished=at, result=result, declared=sorted(drifted | clean | set(unread)),
                        unread=unread, previous=self.active, incomplete=incomplete, revision=revision,
                        errors=errors, read_errors=len(unread), interval_seconds=interval_seconds,
                        remediations=remediations)
        self.active = dict(outcome.active)
        return outcome

    def stall(self, reason: str, *, at: datetime, message: str = "failed") -> ScanOutcome:
        return stalled(self.policy, Stall(reason, message), finished=at, previous=self.active)
