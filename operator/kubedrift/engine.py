"""One scan of one DriftPolicy: source -> cluster -> diff -> verdicts -> publish (reports, status, events)
-> observers (history store, metrics).

The engine only chains the stages. `verdicts.judge` decides the one outcome of the scan; every
publisher translates it. With a live-object cache, a scan leaves what it read in memory and a watch
event re-diffs only the objects it touched (`refresh`): an incremental outcome of the same shape,
published through the same translations. The engine is synchronous and thread-safe; the kopf handlers run each scan
in a worker thread and never run two scans of one policy at once. A store or metrics exporter plugs
in as a `ScanObserver`; the engine does not know what they do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
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
from kubedrift.cluster.live import LiveRead, LiveReader, where
from kubedrift.cluster.watch import ObjectName, WatchKey
from kubedrift.diff.compare import compare_objects, identity
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


class _Stalled(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class _Reading:
    """What the source and cluster stages produced for one scan (filled as far as they got)."""

    spec: PolicySpec | None = None
    revision: str | None = None
    declared: list[str] = field(default_factory=list)
    load_errors: list[LoadError] = field(default_factory=list)
    comparison: Comparison | None = None
    desired: list[KubeObject] = field(default_factory=list)
    access: ReadAccess | None = None
    view: IdentityView | None = None


@dataclass
class _Memory:
    """What a policy's last scan left for the incremental scans after it (used under the policy's lock)."""

    body: dict[str, Any]
    reading: _Reading
    comparison: Comparison
    outcome: ScanOutcome
    status: dict[str, Any]
    desired: dict[str, KubeObject]
    """The desired objects by resource id: parsed once per commit, kept."""
    watched: dict[tuple[WatchKey, ObjectName], str]
    """The live object (watch, namespace/name) each desired object is compared with -> its resource id."""
    by_namespace: dict[str, list[tuple[str, KubeObject]]]
    """The desired objects of each namespace (an autoscaler's change concerns its namespace)."""
    context_versions: dict[str, str]
    """resourceVersion of each autoscaler the policy's comparisons took into account."""
    kinds: set[tuple[str, str]]
    """(group, kind) of every desired object."""
    context_declared: list[str]
    """The desired objects of a context kind (the policy declares its autoscalers)."""


Changes = Mapping[WatchKey, frozenset[ObjectName]]


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
        self._memory: dict[str, _Memory] = {}

    def _policy_lock(self, policy_id: str) -> threading.Lock:
        with self._lock:
            return self._policy_locks.setdefault(policy_id, threading.Lock())

    # ----- one scan -----

    def scan(self, body: dict[str, Any]) -> ScanOutcome:
        with self._policy_lock(policy_ref(body).id):
            return self._scan(body)

    def _scan(self, body: dict[str, Any]) -> ScanOutcome:
        began = time.monotonic()
        ref = policy_ref(body)
        reading = _Reading()
        ledger = ReportLedger()
        try:
            self._read(body, ref, reading)
            ledger = self._ledger(ref)
            remediations = self._remediate(reading, ledger)
            outcome = self._judge(ref, reading, ledger, remediations)
        except _Stalled as stall:
            outcome = stalled(ref, Stall(stall.reason, stall.message), finished=_now(), revision=reading.revision,
                              interval_seconds=reading.spec.interval_seconds if reading.spec else None)
        status = self._publish(body, outcome, ledger, reading)
        self._observe(outcome, time.monotonic() - began)
        self._remember(body, reading, outcome, status)
        _return_freed_memory()
        if outcome.stall is None and outcome.result is not None:
            log.info("scanned %s at %s: %d resources, %d drifted, %d detected, %d resolved, %d errors", ref.id,
                     (outcome.revision or "")[:12], outcome.result.resources, len(outcome.active),
                     len(outcome.detected), len(outcome.resolved), len(outcome.errors))
        elif outcome.stall is not None:
            log.warning("scan of %s stalled: %s: %s", ref.id, outcome.stall.reason, outcome.stall.message)
        return outcome

    def _read(self, body: dict[str, Any], ref: PolicyRef, reading: _Reading) -> None:
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

    def _remediate(self, reading: _Reading, ledger: ReportLedger) -> dict[str, Remediation]:
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
    def _judge(ref: PolicyRef, reading: _Reading, ledger: ReportLedger,
               remediations: dict[str, Remediation]) -> ScanOutcome:
        assert reading.comparison is not None
        return Engine._judge_comparison(ref, reading, reading.comparison, ledger.active(), remediations)

    @staticmethod
    def _judge_comparison(ref: PolicyRef, reading: _Reading, comparison: Comparison,
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

    def _observe(self, outcome: ScanOutcome, duration: float) -> None:
        for observer in self.observers:
            try:
                observer.scan_finished(outcome, duration)
            except Exception:
                log.exception("scan observer %s failed for %s", type(observer).__name__, outcome.policy.id)

    def _publish(self, body: dict[str, Any], outcome: ScanOutcome, ledger: ReportLedger, reading: _Reading,
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

    # ----- incremental scans: a watch event re-diffs the objects it touched -----

    def _remember(self, body: dict[str, Any], reading: _Reading, outcome: ScanOutcome,
                  status: dict[str, Any]) -> None:
        ref = outcome.policy
        comparison, view = reading.comparison, reading.view
        if self.cache is None or outcome.stalled or comparison is None or view is None or reading.access is None:
            with self._lock:
                self._memory.pop(ref.id, None)
            return
        reader = LiveReader(view.client, view.discovery, reading.access)
        desired: dict[str, KubeObject] = {}
        watched: dict[tuple[WatchKey, ObjectName], str] = {}
        by_namespace: dict[str, list[tuple[str, KubeObject]]] = {}
        for obj in reading.desired:
            key = identity(obj)
            desired[key.id] = obj
            by_namespace.setdefault(key.namespace, []).append((key.id, obj))
            resource = reader.served(key.group, key.kind, obj.api_version)
            if resource is not None:
                name = (key.namespace if resource.namespaced else "", key.name)
                watched[(reader.watch_key(resource, key.namespace), name)] = key.id
        kinds = {(k.group, k.kind) for k in map(identity, reading.desired)}
        context_declared = [rid for rid, obj in desired.items() if (identity(obj).group, obj.kind) in CONTEXT_KINDS]
        comparison = dataclasses.replace(comparison, live=[])  # the decoded live objects go with the scan
        reading.comparison = comparison
        memory = _Memory(body, reading, comparison, outcome, status, desired, watched, by_namespace,
                         dict(comparison.context_versions), kinds, context_declared)
        with self._lock:
            self._memory[ref.id] = memory

    def refresh(self, policy_id: str, changes: Changes) -> bool:
        """Re-diff the objects of the policy that these live changes touched, and publish what changed.
        False, doing nothing, while a scan of the policy runs (ask again after it).

        Nothing happens before the policy's first scan (which reads everything anyway), nor for objects
        whose live resourceVersion is the one already compared.
        """
        lock = self._policy_lock(policy_id)
        if not lock.acquire(blocking=False):
            return False
        try:
            with self._lock:
                memory = self._memory.get(policy_id)
            if memory is not None and self.cache is not None:
                self._refresh(memory, changes)
            return True
        finally:
            lock.release()

    def _refresh(self, memory: _Memory, changes: Changes) -> ScanOutcome | None:
        assert self.cache is not None
        began = time.monotonic()
        reading, before = memory.reading, memory.comparison
        assert reading.spec is not None and reading.view is not None and reading.access is not None
        touched, context = _touched(memory, changes, self.cache)
        if not touched:
            return None
        desired = [memory.desired[rid] for rid in sorted(touched)]
        keys = [identity(o) for o in desired]
        # Read as the full scan does: context kinds the policy declares come from its declared objects
        # (those of the namespaces touched), the others from their own watches.
        namespaces = {k.namespace for k in keys}
        declared_context = [o for rid in memory.context_declared if (o := memory.desired[rid]).namespace in namespaces
                            and rid not in touched]
        context_kinds = [ck for ck in CONTEXT_KINDS if ck not in memory.kinds]
        reader = LiveReader(reading.view.client, reading.view.discovery, reading.access, cache=self.cache,
                            owner=memory.outcome.policy.id, declare=False)
        read = [*desired, *declared_context]
        live = reader.read([identity(o) for o in read], context_kinds,
                           api_versions={identity(o): o.api_version for o in read})
        versions = live_versions(live)
        redo = [o for o, k in zip(desired, keys, strict=True)
                if k.id in context or not live.readable(k) or k.id in before.unread
                or versions.get(k.id, "") != before.versions.get(k.id)]
        if not redo:
            return None
        fresh = compare_live(redo, live, reading.spec.settings)
        scope = frozenset(identity(o).id for o in redo)
        kinds = {w for k in map(identity, redo) for w in (where(k.group, k.kind, k.namespace),
                                                            where(k.group, k.kind, ""))}
        read_errors = [e for e in before.read_errors if e.file not in kinds]
        read_errors += [e for e in fresh.read_errors if e not in read_errors]
        comparison = Comparison(
            result=before.result.replaced(scope, fresh.result),
            unread={k: v for k, v in before.unread.items() if k not in scope} | fresh.unread,
            read_errors=read_errors,
            versions={k: v for k, v in before.versions.items() if k not in scope} | fresh.versions,
        )
        ref = memory.outcome.policy
        outcome = self._judge_comparison(ref, reading, comparison, memory.outcome.active, scope=scope)
        try:
            ledger = self.reports.ledger_of(ref, scope)
        except ApiError as exc:
            log.warning("cannot read the DriftReports of %s: %s; the next scan publishes it", ref.id, exc)
            return None
        status = self._publish(memory.body, outcome, ledger, reading, memory.status)
        self._observe(outcome, time.monotonic() - began)
        memory.comparison, memory.outcome, memory.status = comparison, outcome, status
        if outcome.detected or outcome.resolved or outcome.untracked:
            log.info("live change in %s: %d re-diffed, %d detected, %d resolved", ref.id, len(scope),
                     len(outcome.detected), len(outcome.resolved))
        return outcome

    def _forget_memory(self, policy_id: str) -> None:
        with self._lock:
            self._memory.pop(policy_id, None)
        if self.cache is not None:
            self.cache.release(policy_id)

    # ----- this process stops scanning a policy -----

    def spec_changed(self, policy_id: str) -> None:
        """The policy's spec changed: no incremental scan until its next scan has read the new one (the
        watches stay; that scan comes at once)."""
        with self._lock:
            self._memory.pop(policy_id, None)

    def stop_watching(self, body: dict[str, Any]) -> None:
        """No incremental scans of this policy until its next scan (it is suspended)."""
        ref = policy_ref(body)
        with self._policy_lock(ref.id):
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
        with self._policy_lock(ref.id):
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


def _touched(memory: _Memory, changes: Changes, cache: LiveCache) -> tuple[set[str], set[str]]:
    """The resource ids these live changes touch; and those touched through a context object: an
    autoscaler that changed (a new resourceVersion) changes how the replicas of its scale target compare
    (a deleted one: of every object of its namespace that declares replicas)."""
    touched: set[str] = set()
    context: set[str] = set()
    for key, names in changes.items():
        touched |= {rid for name in names if (rid := memory.watched.get((key, name))) is not None}
        if (key.group, key.kind) not in CONTEXT_KINDS:
            continue
        watch = cache.watch(key)
        present = {(str(o["metadata"].get("namespace") or ""), str(o["metadata"].get("name") or "")): o
                   for o in (watch.objects(names) if watch is not None else [])}
        for namespace, name in names:
            autoscaler = present.get((namespace, name))
            rid = f"{key.kind}:{namespace}:{name}"
            version = str((autoscaler or {}).get("metadata", {}).get("resourceVersion") or "") or None
            if memory.context_versions.get(rid) == version:
                continue  # seen as it is by the last comparison
            if version is None:
                memory.context_versions.pop(rid, None)
            else:
                memory.context_versions[rid] = version
            target = ((autoscaler.get("spec") or {}).get("scaleTargetRef") or {}) if autoscaler else None
            for desired_id, obj in memory.by_namespace.get(namespace, []):
                if target is None:
                    hit = "replicas" in (obj.body.get("spec") or {})
                else:
                    hit = (obj.kind, obj.name) == (target.get("kind"), target.get("name"))
                if hit:
                    context.add(desired_id)
    return touched | context, context


def _summary(status: Mapping[str, Any]) -> Any:
    """What of a status a reader watches: everything but the times."""
    conditions = [{k: v for k, v in c.items() if k != "lastTransitionTime"} for c in status.get("conditions") or []]
    return ({k: v for k, v in status.items() if k not in ("lastScanTime", "lastSuccessfulScanTime", "conditions")},
            conditions)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def _return_freed_memory() -> None:
    """Give back to the OS the heap a full scan used and freed (its decoded live objects, its diff): glibc
    keeps it otherwise, and the operator's RSS would stay at its peak instead of what it keeps."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
