"""Prometheus metrics (SPEC §3), on a registry of their own.

They translate each scan's outcome: the policy state, the active drift (one first-seen series per
drift, kept while the drift is not compared, removed when it resolves or is untracked), and the
lifecycle counters. Nothing here decides what was detected or resolved.

Label values come from bounded sets only: policies, the severities, the scan error reasons below, and
the identity of objects Git declares (only valid Kubernetes names, at most MAX_SERIES_PER_POLICY
first-seen series per policy: see metric_labels). Drift age is left to PromQL:
`time() - kubedrift_drift_first_seen_timestamp_seconds`.

With several replicas only the active one exports per-policy drift series: a paused replica calls
`release_policy` and rebuilds them from the next outcome once it works again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kubedrift import __version__
from kubedrift.model import ActiveDrift, ScanOutcome, Severity
from kubedrift.publish.metric_labels import MAX_SERIES_PER_POLICY, OMIT_REASONS, select_series

CONTENT_TYPE = CONTENT_TYPE_LATEST
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

    @classmethod
    def of(cls, drift: ActiveDrift) -> _Series:
        ref = drift.resource
        return cls(ref.kind, ref.namespace, ref.name, drift.severity.label)


class DriftMetrics:
    """The operator's metrics. Thread-safe: scans of different policies report from worker threads."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 series_per_policy: int = MAX_SERIES_PER_POLICY) -> None:
        self.series_per_policy = series_per_policy
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        policy = ["policy", "namespace"]
        Gauge("kubedrift_build_info", "The running kubedrift build (always 1).", ["version"],
              registry=r).labels(version=__version__).set(1)
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
        self.scan_duration = Histogram("kubedrift_scan_duration_seconds",
                                       "Duration of one scan of a policy, publishing included.", policy,
                                       buckets=SCAN_DURATION_BUCKETS, registry=r)
        self.detected = Counter("kubedrift_drifts_detected", "Drifts that became active.", policy, registry=r)
        self.resolved = Counter("kubedrift_drifts_resolved", "Active drifts that went away.", policy, registry=r)
        self.notifications = Counter("kubedrift_notifications", "Notification messages by result: delivered, "
                                     "failed (given up after retries), dropped (queue full), retried (per retry).",
                                     ["result"], registry=r)
        self.remediations = Counter("kubedrift_remediations", "Remediation actions by mode (DryRun, Apply) and "
                                    "result (Succeeded, Failed, Skipped).", ["mode", "result"], registry=r)
        for result in ("delivered", "failed", "dropped", "retried"):
            self.notifications.labels(result=result)
        self.scan_errors = Counter("kubedrift_scan_errors", "Failed scans and partial read errors, by reason.",
                                   [*policy, "reason"], registry=r)
        self.git_fetch_errors = Counter("kubedrift_git_fetch_errors", "Failed fetches of a policy's Git source.",
                                        policy, registry=r)
        self.api_read_errors = Counter("kubedrift_api_read_errors",
                                       "Kinds/namespaces whose live objects could not be read from the "
                                       "Kubernetes API during a scan.", policy, registry=r)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], dict[str, _Series]] = {}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def count_notification(self, result: str) -> None:
        self.notifications.labels(result=result).inc()

    def observe(self, outcome: ScanOutcome, *, duration: float) -> None:
        """One finished scan (`duration`: the whole scan, publishing included).

        An incremental scan (a few objects re-diffed on a watch event) moves the drift series and the
        state, not the figures of full scans (duration, last success, read errors: counted once per scan).
        """
        ref = outcome.policy
        labels = {"policy": ref.name, "namespace": ref.namespace}
        full = not outcome.incremental
        if full:
            self.scan_duration.labels(**labels).observe(max(0.0, duration))
        for reason in ERROR_REASONS:
            self.scan_errors.labels(**labels, reason=reason)  # every reason exported from the start
        for counter in (self.detected, self.resolved, self.git_fetch_errors, self.api_read_errors):
            counter.labels(**labels)
        if outcome.interval_seconds is not None:
            self.interval.labels(**labels).set(outcome.interval_seconds)
        if outcome.read_errors and full:
            self.api_read_errors.labels(**labels).inc(outcome.read_errors)
            self.scan_errors.labels(**labels, reason="PartialRead").inc(outcome.read_errors)
        self.policy_state.labels(**labels).set(int(outcome.state))
        if outcome.stalled:
            reason = outcome.stall.reason if outcome.stall else "Other"
            reason = reason if reason in ERROR_REASONS else "Other"
            self.scan_errors.labels(**labels, reason=reason).inc()
            if reason == "GitError":
                self.git_fetch_errors.labels(**labels).inc()
            elif reason == "ClusterUnavailable":
                self.api_read_errors.labels(**labels).inc()
            return  # a scan that compared nothing changes no drift series

        if full:
            self.last_success.labels(**labels).set(outcome.finished.timestamp())
        self.detected.labels(**labels).inc(len(outcome.detected))
        self.resolved.labels(**labels).inc(len(outcome.resolved))
        for action in outcome.remediations.values():
            self.remediations.labels(mode=action.mode.value, result=action.result).inc()
        for severity, count in outcome.by_severity().items():
            self.drifted_resources.labels(**labels, severity=severity).set(count)
        self._sync_first_seen(ref.namespace, ref.name, outcome.active)

    def _sync_first_seen(self, namespace: str, policy: str, active: Mapping[str, ActiveDrift]) -> None:
        """One first-seen series per active drift (of those metric_labels lets have one)."""
        key = (namespace, policy)
        with self._lock:
            before = self._series.get(key, {})
            selection = select_series([(rid, d.resource) for rid, d in sorted(active.items())], before,
                                      self.series_per_policy)
            after = {rid: _Series.of(drift) for rid, drift in active.items() if rid in selection.exported}
            for rid, old in before.items():
                if after.get(rid) != old:
                    self._remove_series(policy, namespace, old)
            for rid, series in after.items():
                self.first_seen.labels(policy=policy, namespace=namespace, kind=series.kind,
                                       resource_namespace=series.resource_namespace, name=series.name,
                                       severity=series.severity).set(active[rid].first_seen.timestamp())
            for reason, count in selection.omitted.items():
                self.series_omitted.labels(policy=policy, namespace=namespace, reason=reason).set(count)
            self._series[key] = after

    def _remove_series(self, policy: str, namespace: str, series: _Series) -> None:
        with contextlib.suppress(KeyError):
            self.first_seen.remove(policy, namespace, series.kind, series.resource_namespace, series.name,
                                   series.severity)

    def watch_store(self, pending: Callable[[], int], degraded: Callable[[], bool]) -> None:
        """Export the history store's queue depth and health (read at every scrape); only with a store."""
        Gauge("kubedrift_store_pending_writes", "Drift history writes waiting for MongoDB.",
              registry=self.registry).set_function(lambda: float(pending()))
        Gauge("kubedrift_store_up", "1 when drift history writes reach MongoDB, else 0.",
              registry=self.registry).set_function(lambda: 0.0 if degraded() else 1.0)

    def release_policy(self, namespace: str, policy: str) -> None:
        """This process stops scanning the policy (paused replica, stopping): drop its drift gauges.

        The counters stay (they count what this process did); the active replica exports the gauges.
        """
        labels = (policy, namespace)
        with self._lock:
            for series in self._series.pop((namespace, policy), {}).values():
                self._remove_series(policy, namespace, series)
        for gauge in (self.policy_state, self.last_success, self.interval):
            with contextlib.suppress(KeyError):
                gauge.remove(*labels)
        for severity in Severity:
            with contextlib.suppress(KeyError):
                self.drifted_resources.remove(*labels, severity.label)
        for reason in OMIT_REASONS:
            with contextlib.suppress(KeyError):
                self.series_omitted.remove(*labels, reason)

    def forget_policy(self, namespace: str, policy: str) -> None:
        """The policy was deleted: drop every series that names it."""
        self.release_policy(namespace, policy)
        labels = (policy, namespace)
        for metric in (self.scan_duration, self.detected, self.resolved, self.git_fetch_errors,
                       self.api_read_errors):
            with contextlib.suppress(KeyError):
                metric.remove(*labels)
        for reason in ERROR_REASONS:
            with contextlib.suppress(KeyError):
                self.scan_errors.remove(*labels, reason)
