"""Prometheus metrics (SPEC §3), on a registry of their own.

Label values come from bounded sets only: policies, the severities, the scan error reasons below, and
the identity of objects Git declares (for the per-drift first-seen series, removed when the drift
resolves; only valid Kubernetes names, at most MAX_SERIES_PER_POLICY per policy: see metric_labels).
Drift age is left to PromQL: `time() - kubedrift_drift_first_seen_timestamp_seconds`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kubedrift.model import ResourceDrift, ScanResult, Severity
from kubedrift.publish.metric_labels import MAX_SERIES_PER_POLICY, OMIT_REASONS, select_series

CONTENT_TYPE = CONTENT_TYPE_LATEST
STATE_CLEAN, STATE_DRIFT, STATE_ERROR = 0, 1, 2
ERROR_REASONS = (
    "InvalidPolicy", "GitError", "CredentialsError", "ManifestError", "ClusterUnavailable", "PartialRead", "Other",
)
"""Values of `reason` on kubedrift_scan_errors_total; anything else is counted as Other."""
SCAN_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


@dataclass(frozen=True)
class _Series:
    kind: str
    resource_namespace: str
    name: str
    severity: str
    started: float
    exported: bool = True
    """False for drift kept without a series of its own (see metric_labels)."""


class DriftMetrics:
    """The operator's metrics. Thread-safe: scans of different policies report from worker threads."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 series_per_policy: int = MAX_SERIES_PER_POLICY) -> None:
        self.series_per_policy = series_per_policy
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        policy = ["policy", "namespace"]
        self.policy_state = Gauge("kubedrift_policy_state", "Policy state: 0 clean, 1 drift, 2 error.",
                                  policy, registry=r)
        self.drifted_resources = Gauge("kubedrift_drifted_resources",
                                       "Resources of the policy with active drift, by severity.",
                                       [*policy, "severity"], registry=r)
        self.first_seen = Gauge("kubedrift_drift_first_seen_timestamp_seconds",
                                "When the active drift of one object was first seen (one series per drift).",
                                [*policy, "kind", "resource_namespace", "name", "severity"], registry=r)
        self.series_omitted = Gauge("kubedrift_drift_series_omitted",
                                    "Active drifts without a first-seen series of their own: kind/namespace/name "
                                    "not valid Kubernetes names (invalid_name), or over the per-policy cap (limit).",
                                    [*policy, "reason"], registry=r)
        self.last_success = Gauge("kubedrift_last_successful_scan_timestamp_seconds",
                                  "End of the policy's last successful scan.", policy, registry=r)
        self.interval = Gauge("kubedrift_policy_scan_interval_seconds",
                              "The policy's scan interval (spec.interval), for staleness alerts.", policy,
                              registry=r)
        self.scan_duration = Histogram("kubedrift_scan_duration_seconds", "Duration of one scan of a policy.",
                                       buckets=SCAN_DURATION_BUCKETS, registry=r)
        self.detected = Counter("kubedrift_drifts_detected", "Drifts that became active.", registry=r)
        self.resolved = Counter("kubedrift_drifts_resolved", "Active drifts that went away.", registry=r)
        self.scan_errors = Counter("kubedrift_scan_errors", "Failed scans and partial read errors, by reason.",
                                   ["reason"], registry=r)
        self.git_fetch_errors = Counter("kubedrift_git_fetch_errors", "Failed fetches of a policy's Git source.",
                                        policy, registry=r)
        self.api_read_errors = Counter("kubedrift_api_read_errors",
                                       "Kinds/namespaces whose live objects could not be read from the "
                                       "Kubernetes API during a scan.", policy, registry=r)
        for reason in ERROR_REASONS:
            self.scan_errors.labels(reason=reason)
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], dict[str, _Series]] = {}
        self._seeds: dict[tuple[str, str], dict[str, float]] = {}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def seed_first_seen(self, namespace: str, policy: str, first_seen: Mapping[str, datetime]) -> None:
        """firstSeen of active drift known before a restart (from DriftReports), by resource id."""
        with self._lock:
            self._seeds.setdefault((namespace, policy), {}).update(
                {rid: at.timestamp() for rid, at in first_seen.items()})

    def observe_scan(
        self,
        namespace: str,
        policy: str,
        result: ScanResult | None,
        *,
        duration: float,
        finished: datetime,
        error_reason: str | None = None,
        read_errors: int = 0,
        interval_seconds: float | None = None,
    ) -> None:
        """One finished scan of policy `namespace/policy`.

        `result` None or `error_reason` set: the scan failed (state 2; drift series stay as they were).
        `read_errors`: kinds or namespaces of live objects that could not be read (the rest was compared).
        """
        self.scan_duration.observe(max(0.0, duration))
        labels = {"policy": policy, "namespace": namespace}
        if interval_seconds is not None:
            self.interval.labels(**labels).set(interval_seconds)
        if read_errors:
            self.api_read_errors.labels(**labels).inc(read_errors)
            self.scan_errors.labels(reason="PartialRead").inc(read_errors)
        if error_reason is not None or result is None:
            reason = error_reason if error_reason in ERROR_REASONS else "Other"
            self.scan_errors.labels(reason=reason).inc()
            if reason == "GitError":
                self.git_fetch_errors.labels(**labels).inc()
            elif reason == "ClusterUnavailable":
                self.api_read_errors.labels(**labels).inc()
            self.policy_state.labels(**labels).set(STATE_ERROR)
            return

        self.policy_state.labels(**labels).set(STATE_DRIFT if result.drifts else STATE_CLEAN)
        self.last_success.labels(**labels).set(finished.timestamp())
        for severity, count in result.by_severity().items():
            self.drifted_resources.labels(**labels, severity=severity).set(count)
        self._sync_first_seen(namespace, policy, result.drifts, finished.timestamp())

    def _sync_first_seen(self, namespace: str, policy: str, drifts: list[ResourceDrift], now: float) -> None:
        key = (namespace, policy)
        with self._lock:
            before = self._active.get(key, {})
            seeds = self._seeds.get(key, {})
            selection = select_series(drifts, {rid for rid, s in before.items() if s.exported},
                                      self.series_per_policy)
            after: dict[str, _Series] = {}
            for drift in drifts:
                old = before.get(drift.id)
                if old is None:
                    self.detected.inc()
                    started = min(seeds.pop(drift.id, now), now)
                    since = drift.since_time()
                    if since is not None:  # age counts from the earliest attributed change
                        started = min(started, since.timestamp())
                else:
                    started = old.started
                series = _Series(drift.resource.kind, drift.resource.namespace, drift.resource.name,
                                 drift.severity.label, started, exported=drift.id in selection.exported)
                after[drift.id] = series
                if old is not None and (old.severity, old.exported) == (series.severity, series.exported):
                    continue
                if old is not None and old.exported:
                    # Same drift, new severity: move the series, keeping its first-seen time.
                    self.first_seen.remove(policy, namespace, old.kind, old.resource_namespace, old.name,
                                           old.severity)
                if series.exported:
                    self.first_seen.labels(policy=policy, namespace=namespace, kind=series.kind,
                                           resource_namespace=series.resource_namespace, name=series.name,
                                           severity=series.severity).set(started)
            for resource_id, old in before.items():
                if resource_id not in after:
                    self.resolved.inc()
                    if old.exported:
                        self.first_seen.remove(policy, namespace, old.kind, old.resource_namespace, old.name,
                                               old.severity)
            for reason, count in selection.omitted.items():
                self.series_omitted.labels(policy=policy, namespace=namespace, reason=reason).set(count)
            self._active[key] = after

    def watch_store(self, pending: Callable[[], int], degraded: Callable[[], bool]) -> None:
        """Export the history store's queue depth and health (read at every scrape); only with a store."""
        Gauge("kubedrift_store_pending_writes", "Drift history writes waiting for MongoDB.",
              registry=self.registry).set_function(lambda: float(pending()))
        Gauge("kubedrift_store_up", "1 when drift history writes reach MongoDB, else 0.",
              registry=self.registry).set_function(lambda: 0.0 if degraded() else 1.0)

    def forget_policy(self, namespace: str, policy: str) -> None:
        """The policy was deleted: drop every series that names it."""
        labels = (policy, namespace)
        with self._lock:
            for series in self._active.pop((namespace, policy), {}).values():
                if series.exported:
                    self.first_seen.remove(*labels, series.kind, series.resource_namespace, series.name,
                                           series.severity)
            self._seeds.pop((namespace, policy), None)
        for gauge in (self.policy_state, self.last_success, self.interval, self.git_fetch_errors,
                      self.api_read_errors):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        for severity in Severity:
            with contextlib.suppress(KeyError):
                self.drifted_resources.remove(*labels, severity.label)
        for reason in OMIT_REASONS:
            with contextlib.suppress(KeyError):
                self.series_omitted.remove(*labels, reason)
