"""Scan observers that feed the engine's outcomes to the history store and the metrics.

Each is an `engine.ScanObserver`: called in the scan's worker thread, never blocking (the store only
queues), never failing the scan.
"""

from __future__ import annotations

import atexit
import datetime
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web

from kubedrift.cluster.client import ApiError, KubeClient, resource_path
from kubedrift.engine import ScanObserver, ScanOutcome
from kubedrift.policy import GROUP, VERSION
from kubedrift.publish.api import register_api
from kubedrift.publish.api_auth import KubeAuthorizer
from kubedrift.publish.health import Readiness
from kubedrift.publish.metrics import DriftMetrics
from kubedrift.publish.ownership import owned_reports
from kubedrift.publish.reports import PolicyRef
from kubedrift.publish.scan_trigger import AnnotationScanTrigger
from kubedrift.store import DriftStore, seeds_from_reports

log = logging.getLogger(__name__)


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
            read_errors=outcome.read_errors,
            interval_seconds=outcome.spec.interval_seconds if outcome.spec else None,
        )

    def policy_deleted(self, policy: PolicyRef) -> None:
        self.metrics.forget_policy(policy.namespace, policy.name)


def seed_from_reports(reports: Iterable[Mapping[str, Any]], policies: Iterable[Mapping[str, Any]], *,
                      store: DriftStore | None, metrics: DriftMetrics | None) -> int:
    """At startup: firstSeen of active drift from existing DriftReports, so a restart keeps drift age.

    Only reports owned by one of `policies` (same namespace, that policy's uid) are believed.
    """
    seeds = seeds_from_reports(owned_reports(reports, policies))
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


def build(
    app: web.Application,
    readiness: Readiness,
    client: KubeClient,
    *,
    mongodb_uri: str | None,
    namespace: str | None = None,
    api_audiences: Sequence[str] = (),
) -> list[ScanObserver]:
    """Metrics, history store (when `mongodb_uri`) and the REST API on `app`; the observers to pass the engine.

    Active drift's firstSeen is seeded from the existing DriftReports, so a restart keeps drift age.
    """
    metrics = DriftMetrics()
    store = DriftStore.from_env(mongodb_uri, on_health=store_health_hook(readiness.degrade, readiness.recover))
    observers: list[ScanObserver] = [MetricsObserver(metrics)]
    if store is not None:
        store.start()
        atexit.register(store.close)
        metrics.watch_store(lambda: store.pending, lambda: store.degraded_reason is not None)
        observers.append(HistoryObserver(store))
        log.info("drift history goes to MongoDB database %r", store.database_name)
    else:
        log.info("MONGODB_URI is not set: drift history and /api/v1 records are off")
    try:
        listed = client.get(resource_path(GROUP, VERSION, "driftreports", namespace))
        policies = client.get(resource_path(GROUP, VERSION, "driftpolicies", namespace))
        seeded = seed_from_reports((listed or {}).get("items") or [], (policies or {}).get("items") or [],
                                   store=store, metrics=metrics)
        log.info("first-seen times of %d active drifts taken from DriftReports", seeded)
    except ApiError as exc:
        log.warning("cannot list DriftReports to keep drift ages across the restart: %s", exc)
    register_api(app, store=store, authorizer=KubeAuthorizer(client, audiences=api_audiences),
                 trigger=AnnotationScanTrigger(client, namespace), metrics=metrics)
    return observers
