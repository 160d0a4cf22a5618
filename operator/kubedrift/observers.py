"""Scan observers that feed the engine's outcomes to the history store and the metrics.

Each is an `engine.ScanObserver`: called in the scan's worker thread, never blocking (the store only
queues), never failing the scan.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from kubedrift.engine import ScanOutcome
from kubedrift.publish.metrics import DriftMetrics
from kubedrift.publish.reports import PolicyRef
from kubedrift.store import DriftStore, seeds_from_reports

log = logging.getLogger(__name__)


def _is_live_read_error(file: str) -> bool:
    # cluster/live.py names unreadable kinds "<Kind[.group]> in namespace <ns>" or "... (cluster-scoped)".
    return " in namespace " in file or file.endswith(" (cluster-scoped)")


class HistoryObserver:
    """Records every successful scan in MongoDB (through the store's write queue)."""

    def __init__(self, store: DriftStore) -> None:
        self.store = store

    def scan_finished(self, outcome: ScanOutcome) -> None:
        if not outcome.ok or outcome.result is None:
            return  # a failed scan tells nothing about drift: records stay as they are
        self.store.record_scan(outcome.policy.id, outcome.result, revision=outcome.revision or "",
                               now=outcome.finished, compared=outcome.compared)

    def policy_deleted(self, policy: PolicyRef) -> None:
        self.store.forget_policy(policy.id, now=datetime.datetime.now(datetime.UTC))


class MetricsObserver:
    def __init__(self, metrics: DriftMetrics) -> None:
        self.metrics = metrics

    def scan_finished(self, outcome: ScanOutcome) -> None:
        ref = outcome.policy
        self.metrics.observe_scan(
            ref.namespace,
            ref.name,
            outcome.result if outcome.ok else None,
            duration=outcome.duration,
            finished=outcome.finished,
            error_reason=outcome.stalled_reason,
            read_errors=sum(1 for e in outcome.errors if _is_live_read_error(e.file)),
            interval_seconds=outcome.spec.interval_seconds if outcome.spec else None,
        )

    def policy_deleted(self, policy: PolicyRef) -> None:
        self.metrics.forget_policy(policy.namespace, policy.name)


def seed_from_reports(reports: Iterable[Mapping[str, Any]], *, store: DriftStore | None,
                      metrics: DriftMetrics | None) -> int:
    """At startup: firstSeen of active drift from existing DriftReports, so a restart keeps drift age."""
    seeds = seeds_from_reports(reports)
    if store is not None:
        store.seed_first_seen(seeds)
    if metrics is not None:
        by_policy: dict[tuple[str, str], dict[str, datetime.datetime]] = {}
        for seed in seeds:
            namespace, _, name = seed.policy.partition("/")
            by_policy.setdefault((namespace, name), {})[seed.resource_id] = seed.first_seen
        for (namespace, name), first_seen in by_policy.items():
            metrics.seed_first_seen(namespace, name, first_seen)
    return len(seeds)


def store_health_hook(degrade: Callable[[str, str], None], recover: Callable[[str], None]) -> Callable[
        [str | None], None]:
    """An `on_health` callback for DriftStore that sets/clears the `mongodb` degraded reason of /readyz."""

    def changed(reason: str | None) -> None:
        if reason is None:
            recover("mongodb")
        else:
            degrade("mongodb", reason)

    return changed
