"""Scan observers that feed the engine's outcomes to the history store and the metrics.

Each is an `engine.ScanObserver`: called in the scan's worker thread, never blocking (the store only
queues), never failing the scan.
"""

from __future__ import annotations

import atexit
import datetime
import logging
from collections.abc import Callable, Sequence

from aiohttp import web

from kubedrift.cluster.client import KubeClient
from kubedrift.engine import ScanObserver
from kubedrift.model import PolicyRef, ScanOutcome
from kubedrift.publish.api import register_api
from kubedrift.publish.api_auth import KubeAuthorizer
from kubedrift.publish.delivery import Notifier
from kubedrift.publish.health import Readiness
from kubedrift.publish.metrics import DriftMetrics
from kubedrift.publish.scan_trigger import AnnotationScanTrigger
from kubedrift.store import DriftStore

log = logging.getLogger(__name__)


class HistoryObserver:
    """Records every scan's outcome in MongoDB (through the store's write queue)."""

    def __init__(self, store: DriftStore) -> None:
        self.store = store

    def scan_finished(self, outcome: ScanOutcome, duration: float) -> None:
        self.store.record_scan(outcome)

    def policy_released(self, policy: PolicyRef) -> None:
        pass  # records are shared by the replicas: nothing of them belongs to this process

    def policy_deleted(self, policy: PolicyRef) -> None:
        self.store.forget_policy(policy.id, now=datetime.datetime.now(datetime.UTC))


class MetricsObserver:
    def __init__(self, metrics: DriftMetrics) -> None:
        self.metrics = metrics

    def scan_finished(self, outcome: ScanOutcome, duration: float) -> None:
        self.metrics.observe(outcome, duration=duration)

    def policy_released(self, policy: PolicyRef) -> None:
        self.metrics.release_policy(policy.namespace, policy.name)

    def policy_deleted(self, policy: PolicyRef) -> None:
        self.metrics.forget_policy(policy.namespace, policy.name)


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
    notifier: Notifier | None = None,
) -> list[ScanObserver]:
    """Metrics, history store (when `mongodb_uri`) and the REST API on `app`; the observers to pass the engine.

    Nothing is seeded: each scan reads the drift active before it, with its firstSeen, from the
    policy's DriftReports, so a restart or a new leader keeps drift age.
    """
    metrics = DriftMetrics()
    if notifier is not None:
        notifier.count_with(metrics.count_notification)
    store = DriftStore.from_uri(mongodb_uri, on_health=store_health_hook(readiness.degrade, readiness.recover))
    observers: list[ScanObserver] = [MetricsObserver(metrics)]
    if store is not None:
        store.start()
        atexit.register(store.close)
        metrics.watch_store(lambda: store.pending, lambda: store.degraded_reason is not None)
        observers.append(HistoryObserver(store))
        log.info("drift history goes to MongoDB database %r", store.database_name)
    else:
        log.info("MONGODB_URI is not set: drift history and /api/v1 records are off")
    register_api(app, store=store, authorizer=KubeAuthorizer(client, audiences=api_audiences),
                 trigger=AnnotationScanTrigger(client, namespace), metrics=metrics)
    return observers
