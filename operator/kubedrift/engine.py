"""One scan of one DriftPolicy: source -> cluster -> diff -> verdicts -> publish (reports, status, events)
-> observers (history store, metrics).

The engine only chains the stages. `verdicts.judge` decides the one outcome of the scan; every
publisher translates it. With a live-object cache, a scan leaves what it read to its `ScanMemory`
(incremental.py), where a watch event re-diffs only the objects it touched: an incremental outcome of
the same shape, published through the same translations. The engine is synchronous and thread-safe;
the kopf handlers run each scan in a worker thread and never run two scans of one policy at once. A
store or metrics exporter plugs in as a `ScanObserver`; the engine does not know what they do.
"""

from __future__ import annotations

import datetime
import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubedrift.cluster.access import ClusterViews, IdentityView, ReadAccess, Tenancy, read_secret
from kubedrift.cluster.cache import LiveCache
from kubedrift.cluster.client import ApiError, KubeClient
from kubedrift.cluster.live import LiveRead, LiveReader
from kubedrift.diff.compare import compare_objects, identity
from kubedrift.heap import return_freed_memory
from kubedrift.model import (
    SCAN_REQUEST_ANNOTATION,
    ActiveDrift,
    DiffSettings,
    KubeObject,
    LoadError,
    PolicyRef,
    Remediation,
    RemediationMode,
    ScanOutcome,
    ScanResult,
    Stall,
)
from kubedrift.policy import PolicyError, PolicySpec, parse_policy
from kubedrift.publish.delivery import Notifier, notify, secret_reader
from kubedrift.publish.events import EventRecorder
from kubedrift.publish.fix import propose_fixes
from kubedrift.publish.remediation import remediate
from kubedrift.publish.reports import ReportLedger, ReportPublisher
from kubedrift.publish.status import ScanStatus, StatusWriter, build_status
from kubedrift.source.git import Checkout, CredentialsError, GitCache, GitSourceError, credentials_for_policy
from kubedrift.source.tree import load_checkout
from kubedrift.verdicts import judge, stalled

log = logging.getLogger(__name__)

CONTEXT_KINDS = (("autoscaling", "HorizontalPodAutoscaler"),)


@dataclass
class Comparison:
    result: ScanResult
    unread: dict[str, str]
    """Ids of desired objects whose live twins could not be listed, with the reason: not compared, never
    `Missing`."""
    read_errors: list[LoadError]
    """Kinds/namespaces the API would not list."""
    live: list[KubeObject] = field(default_factory=list)
    """The live objects read (what the fixes were proposed against)."""
    versions: dict[str, str] = field(default_factory=dict)
    """resourceVersion of the live twin each desired object was compared with ("" when it had none)."""
    context_versions: dict[str, str] = field(default_factory=dict)
    """resourceVersion of each context object (autoscaler) the comparison saw, by its resource id."""


def compare_with_cluster(desired: Sequence[KubeObject], reader: LiveReader, settings: DiffSettings) -> Comparison:
    """Read the live twins of `desired` (and the autoscalers that own replicas) and compare them."""
    keys = [identity(o) for o in desired]
    versions = {k: o.api_version for k, o in zip(keys, desired, strict=True)}
    return compare_live(desired, reader.read(keys, CONTEXT_KINDS, api_versions=versions), settings)


def compare_live(desired: Sequence[KubeObject], live: LiveRead, settings: DiffSettings) -> Comparison:
    keys = [identity(o) for o in desired]
    comparable = [o for o, k in zip(desired, keys, strict=True) if live.readable(k)]
    result = compare_objects(comparable, live.objects, settings, crds=live.crds)
    propose_fixes(result, comparable, live.objects, settings)
    versions = live_versions(live)
    context = {kind for _, kind in CONTEXT_KINDS}
    return Comparison(
        result=result,
        unread={k.id: live.reason(k) or "its live state could not be read" for k in keys if not live.readable(k)},
        read_errors=live.errors,
        live=list(live.objects),
        versions={k.id: versions.get(k.id, "") for k in keys if live.readable(k)},
        context_versions={rid: v for rid, v in versions.items() if rid.split(":", 1)[0] in context},
    )


def live_versions(live: LiveRead) -> dict[str, str]:
    return {identity(o).id: str((o.body.get("metadata") or {}).get("resourceVersion") or "") for o in live.objects}


class ScanObserver(Protocol):
    """Something that wants every scan's outcome (MongoDB history, Prometheus metrics, ...).

    Called in the scan's worker thread once the reports, status and events are published. An observer
    that raises is logged and skipped; it never fails the scan.
    """

    def scan_finished(self, outcome: ScanOutcome, duration: float) -> None:
        """`duration`: seconds the whole scan took, publishing included."""

    def policy_released(self, policy: PolicyRef) -> None:
        """This process stops scanning the policy for now (another replica leads, or it stops)."""

    def policy_deleted(self, policy: PolicyRef) -> None: ...


class ScanMemory(Protocol):
    """Keeps what a policy's scans read and decided, for the incremental scans after them (incremental.py)."""

    def remember(self, body: dict[str, Any], reading: Reading, outcome: ScanOutcome,
                 status: dict[str, Any]) -> None:
        """Called after each scan of the policy, under its lock (a stalled scan voids the memory)."""

    def forget(self, policy_id: str) -> None:
        """The policy's memory is void until its next scan."""


class _Stalled(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Reading:
    """What the source and cluster stages produced for one scan (filled as far as they got)."""

    spec: PolicySpec | None = None
    revision: str | None = None
    declared: list[str] = field(default_factory=list)
    load_errors: list[LoadError] = field(default_factory=list)
    comparison: Comparison | None = None
    desired: list[KubeObject] = field(default_factory=list)
    access: ReadAccess | None = None
    view: IdentityView | None = None


def policy_ref(body: dict[str, Any]) -> PolicyRef:
    meta = body.get("metadata") or {}
    return PolicyRef(namespace=str(meta.get("namespace") or "default"), name=str(meta.get("name") or ""),
                     uid=str(meta.get("uid") or ""))


class Engine:
    def __init__(
        self,
        client: KubeClient,
        git_cache: GitCache,
        *,
        retention_seconds: float = 24 * 3600.0,
        git_timeout: float = 60.0,
        observers: Sequence[ScanObserver] = (),
        instance: str = "",
        tenancy: Tenancy | None = None,
        min_interval: float = 0.0,
        notifier: Notifier | None = None,
        cache: LiveCache | None = None,
    ) -> None:
        """`min_interval`: the operator's floor on scan intervals; outcomes report the interval in effect."""
        self.client = client
        self.cache = cache
        """Live objects from shared watches (None: one LIST per kind and namespace at each scan)."""
        self.tenancy = tenancy or Tenancy()
        self.views = ClusterViews(client)
        """Reads for a policy go through the view of its identity (SPEC §3 Tenancy); writes use `client`."""
        self.git_cache = git_cache
        self.git_timeout = git_timeout
        self.observers = list(observers)
        self.min_interval = min_interval
        self.reports = ReportPublisher(client, retention_seconds)
        self.status = StatusWriter(client)
        self.events = EventRecorder(client, instance)
        self.notifier = notifier
        """Delivers `spec.notifications` off the scan path (publish/delivery.py); None: notifications are off."""
        self._lock = threading.Lock()
        self._manifests: dict[str, tuple[tuple[Any, ...], list[KubeObject], list[LoadError]]] = {}
        self._policy_locks: dict[str, threading.Lock] = {}
        self.memory: ScanMemory | None = None
        """Keeps each scan for the incremental scans after it (incremental.py attaches itself); None: none."""

    def policy_lock(self, policy_id: str) -> threading.Lock:
        with self._lock:
            return self._policy_locks.setdefault(policy_id, threading.Lock())

    # ----- one scan -----

    def scan(self, body: dict[str, Any]) -> ScanOutcome:
        with self.policy_lock(policy_ref(body).id):
            return self._scan(body)

    def _scan(self, body: dict[str, Any]) -> ScanOutcome:
        began = time.monotonic()
        ref = policy_ref(body)
        reading = Reading()
        ledger = ReportLedger()
        try:
            self._read(body, ref, reading)
            ledger = self._ledger(ref)
            remediations = self._remediate(reading, ledger)
            outcome = self._judge(ref, reading, ledger, remediations)
        except _Stalled as stall:
            outcome = stalled(ref, Stall(stall.reason, stall.message), finished=_now(), revision=reading.revision,
                              interval_seconds=reading.spec.interval_seconds if reading.spec else None)
        status = self.publish(body, outcome, ledger, reading)
        self.observe(outcome, time.monotonic() - began)
        if self.memory is not None:
            self.memory.remember(body, reading, outcome, status)
        return_freed_memory()
        if outcome.stall is None and outcome.result is not None:
            log.info("scanned %s at %s: %d resources, %d drifted, %d detected, %d resolved, %d errors", ref.id,
                     (outcome.revision or "")[:12], outcome.result.resources, len(outcome.active),
                     len(outcome.detected), len(outcome.resolved), len(outcome.errors))
        elif outcome.stall is not None:
            log.warning("scan of %s stalled: %s: %s", ref.id, outcome.stall.reason, outcome.stall.message)
        return outcome

    def _read(self, body: dict[str, Any], ref: PolicyRef, reading: Reading) -> None:
        try:
            spec = parse_policy(body)
        except PolicyError as exc:
            raise _Stalled("InvalidPolicy", str(exc)) from None
        spec.interval_seconds = max(spec.interval_seconds, self.min_interval)
        reading.spec = spec
        assert spec.source is not None  # parse_policy requires it
        access = self.tenancy.access_for(spec.namespace, spec.service_account_name)
        view = self.views.view(access)
        reading.access, reading.view = access, view
        try:
            credentials = credentials_for_policy(spec.source.secret_ref, spec.source.repo_url, spec.namespace,
                                                 functools.partial(read_secret, view, access))
            checkout = self.git_cache.checkout(spec.source.repo_url, spec.source.revision, namespace=spec.namespace,
                                               credentials=credentials, timeout=self.git_timeout)
        except CredentialsError as exc:
            raise _Stalled("CredentialsError", exc.message) from None
        except GitSourceError as exc:
            raise _Stalled("GitError", exc.message) from None
        reading.revision = checkout.sha
        try:
            view.refresh_discovery()
            desired, load_errors = self._desired(ref, spec, checkout, view)
            if load_errors and not desired:
                first = load_errors[0]
                raise _Stalled("ManifestError", f"no manifest could be read: {first.file}: {first.message}")
            if spec.namespaces:
                desired = [o for o in desired if not o.namespace or o.namespace in spec.namespaces]
            if any(view.discovery.resolve(k.group, k.kind) is None for k in map(identity, desired)):
                view.refresh_discovery(force=True)  # a CRD may have been installed just now
            reader = LiveReader(view.client, view.discovery, access, cache=self.cache, owner=ref.id)
            reading.comparison = compare_with_cluster(desired, reader, spec.settings)
        except ApiError as exc:
            raise _Stalled("ClusterUnavailable", f"Kubernetes API: {exc}") from None
        reading.declared = [identity(o).id for o in desired]
        reading.desired = desired
        reading.load_errors = load_errors

    def _remediate(self, reading: Reading, ledger: ReportLedger) -> dict[str, Remediation]:
        """`spec.remediation` (off by default), through the policy's identity; drift already reported only."""
        spec, comparison, view, access = reading.spec, reading.comparison, reading.view, reading.access
        assert spec is not None and comparison is not None and view is not None and access is not None
        if spec.remediation.mode is RemediationMode.OFF:
            return {}
        settings = spec.settings

        def rescan(objects: Sequence[KubeObject]) -> ScanResult:
            return compare_with_cluster(objects, LiveReader(view.client, view.discovery, access), settings).result

        try:
            return remediate(spec.remediation, comparison.result, reading.desired, comparison.live, settings,
                             client=view.client, discovery=view.discovery, reported=ledger.active().keys(),
                             may_write=not access.confined, rescan=rescan)
        except ApiError as exc:  # the rescan could not read: what was read before stands
            log.warning("remediation of %s: cannot compare again: %s", spec.id, exc)
            return {}

    def _ledger(self, ref: PolicyRef) -> ReportLedger:
        """The policy's DriftReports: the drift active before this scan, and since when."""
        try:
            return self.reports.ledger(ref)
        except ApiError as exc:
            raise _Stalled("ClusterUnavailable", f"cannot list the policy's DriftReports: {exc}") from None

    @staticmethod
    def _judge(ref: PolicyRef, reading: Reading, ledger: ReportLedger,
               remediations: dict[str, Remediation]) -> ScanOutcome:
        assert reading.comparison is not None
        return Engine.judge_comparison(ref, reading, reading.comparison, ledger.active(), remediations)

    @staticmethod
    def judge_comparison(ref: PolicyRef, reading: Reading, comparison: Comparison,
                         previous: Mapping[str, ActiveDrift], remediations: dict[str, Remediation] | None = None,
                         scope: frozenset[str] | None = None) -> ScanOutcome:
        assert reading.spec is not None
        incomplete = None
        if reading.load_errors:
            first = reading.load_errors[0]
            incomplete = (f"{len(reading.load_errors)} manifest file(s) could not be read, so whether it is still "
                          f"declared is unknown; first: {first.file}: {first.message}")
        return judge(
            ref,
            finished=_now(),
            result=comparison.result,
            declared=reading.declared,
            unread=comparison.unread,
            previous=previous,
            incomplete=incomplete,
            revision=reading.revision,
            errors=[*reading.load_errors, *comparison.read_errors, *comparison.result.errors],
            read_errors=len(comparison.read_errors),
            interval_seconds=reading.spec.interval_seconds,
            remediations=remediations,
            scope=scope,
        )

    def _desired(
        self, ref: PolicyRef, spec: PolicySpec, checkout: Checkout, view: IdentityView
    ) -> tuple[list[KubeObject], list[LoadError]]:
        """Manifests of the checkout; an unchanged commit (and paths) reuses the last reading.

        The cached objects are shared between scans: the diff stage never mutates its inputs.
        """
        assert spec.source is not None
        cache_key = (checkout.sha, tuple(spec.source.paths), spec.settings.default_namespace, view.client.user)
        with self._lock:
            cached = self._manifests.get(ref.id)
        if cached is not None and cached[0] == cache_key:
            return list(cached[1]), list(cached[2])
        objects, errors = load_checkout(checkout.path, spec.source.paths,
                                        default_namespace=spec.settings.default_namespace, scopes=view.discovery)
        with self._lock:
            self._manifests[ref.id] = (cache_key, list(objects), list(errors))
        return objects, errors

    # ----- publish -----

    def observe(self, outcome: ScanOutcome, duration: float) -> None:
        for observer in self.observers:
            try:
                observer.scan_finished(outcome, duration)
            except Exception:
                log.exception("scan observer %s failed for %s", type(observer).__name__, outcome.policy.id)

    def publish(self, body: dict[str, Any], outcome: ScanOutcome, ledger: ReportLedger, reading: Reading,
                previous_status: dict[str, Any] | None = None) -> dict[str, Any]:
        """Reports, events, notifications and status of one outcome; returns the status written."""
        ref = outcome.policy
        previous = dict(body.get("status") or {}) if previous_status is None else previous_status
        synced = self.reports.sync(outcome, ledger)
        self.events.publish(outcome, previous)
        targets = reading.spec.notifications if reading.spec else []
        if self.notifier is not None and reading.view is not None and targets:
            notify(self.notifier, outcome, targets, secret_reader(reading.view.client, ref.namespace,
                                                                  allow_http=self.notifier.allow_http))
        meta = body.get("metadata") or {}
        status = build_status(
            ScanStatus(
                outcome=outcome,
                generation=int(meta.get("generation") or 0),
                scan_request=(meta.get("annotations") or {}).get(SCAN_REQUEST_ANNOTATION),
                publish_errors=[LoadError("DriftReport", message) for message in synced.errors],
                notifications=self.notifier.states(ref.id, targets) if self.notifier and targets else [],
            ),
            previous,
        )
        if outcome.incremental and _summary(status) == _summary(previous):
            return previous  # the re-diff changed no count or condition: no status write per event
        try:
            self.status.write(ref, status)
        except ApiError as exc:
            if not exc.not_found:  # a policy deleted meanwhile has no status to write
                log.warning("cannot write the status of %s: %s", ref.id, exc)
        return status

    def _forget_memory(self, policy_id: str) -> None:
        if self.memory is not None:
            self.memory.forget(policy_id)
        if self.cache is not None:
            self.cache.release(policy_id)

    # ----- this process stops scanning a policy -----

    def spec_changed(self, policy_id: str) -> None:
        """The policy's spec changed: no incremental scan until its next scan has read the new one (the
        watches stay; that scan comes at once)."""
        if self.memory is not None:
            self.memory.forget(policy_id)

    def stop_watching(self, body: dict[str, Any]) -> None:
        """No incremental scans of this policy until its next scan (it is suspended)."""
        ref = policy_ref(body)
        with self.policy_lock(ref.id):
            self._forget_memory(ref.id)

    def release(self, body: dict[str, Any]) -> None:
        """Another replica leads now, or the operator stops: stop watching for it and exporting what this one
        knew."""
        self.stop_watching(body)
        ref = policy_ref(body)
        for observer in self.observers:
            try:
                observer.policy_released(ref)
            except Exception:
                log.exception("scan observer %s failed on release of %s", type(observer).__name__, ref.id)

    # ----- policy gone -----

    def forget(self, body: dict[str, Any]) -> int:
        """The policy is being deleted: remove its reports and cached state."""
        ref = policy_ref(body)
        with self._lock:
            self._manifests.pop(ref.id, None)
        with self.policy_lock(ref.id):
            self._forget_memory(ref.id)
        if self.notifier is not None:
            self.notifier.forget(ref.id)
        for observer in self.observers:
            try:
                observer.policy_deleted(ref)
            except Exception:
                log.exception("scan observer %s failed on deletion of %s", type(observer).__name__, ref.id)
        deleted = self.reports.delete_all(ref)
        log.info("policy %s deleted: removed %d DriftReports", ref.id, deleted)
        return deleted


def _summary(status: Mapping[str, Any]) -> Any:
    """What of a status a reader watches: everything but the times."""
    conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []]
    return ({k: v for k, v in status.items() if k not in ("lastScanTime", "lastSuccessfulScanTime", "conditions")},
            conditions)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
