"""One scan of one DriftPolicy: source -> cluster -> diff -> verdicts -> publish (reports, status, events)
-> observers (history store, metrics).

The engine only chains the stages. `verdicts.judge` decides the one outcome of the scan; every
publisher translates it. The engine is synchronous and thread-safe; the kopf handlers run each scan
in a worker thread and never run two scans of one policy at once. A store or metrics exporter plugs
in as a `ScanObserver`; the engine does not know what they do.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubedrift.cluster.access import ClusterViews, IdentityView, ReadAccess, Tenancy
from kubedrift.cluster.client import ApiError, KubeClient, resource_path
from kubedrift.cluster.live import LiveReader
from kubedrift.diff.compare import compare_objects, identity
from kubedrift.model import (
    SCAN_REQUEST_ANNOTATION,
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
from kubedrift.source.git import Checkout, GitCache, GitCredentials, GitSourceError, credentials_for_repo
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


def compare_with_cluster(desired: Sequence[KubeObject], reader: LiveReader, settings: DiffSettings) -> Comparison:
    """Read the live twins of `desired` (and the autoscalers that own replicas) and compare them."""
    keys = [identity(o) for o in desired]
    live = reader.read(keys, CONTEXT_KINDS, api_versions={k: o.api_version for k, o in zip(keys, desired, strict=True)})
    comparable = [o for o, k in zip(desired, keys, strict=True) if live.readable(k)]
    result = compare_objects(comparable, live.objects, settings, crds=live.crds)
    propose_fixes(result, comparable, live.objects, settings)
    return Comparison(
        result=result,
        unread={k.id: live.reason(k) or "its live state could not be read" for k in keys if not live.readable(k)},
        read_errors=live.errors,
        live=list(live.objects),
    )


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
    ) -> None:
        """`min_interval`: the operator's floor on scan intervals; outcomes report the interval in effect."""
        self.client = client
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

    # ----- one scan -----

    def scan(self, body: dict[str, Any]) -> ScanOutcome:
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
        self._publish(body, outcome, ledger, reading)
        duration = time.monotonic() - began
        for observer in self.observers:
            try:
                observer.scan_finished(outcome, duration)
            except Exception:
                log.exception("scan observer %s failed for %s", type(observer).__name__, ref.id)
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
        credentials = self._credentials(spec, view, access)
        try:
            checkout = self.git_cache.checkout(spec.source.repo_url, spec.source.revision, namespace=spec.namespace,
                                               credentials=credentials, timeout=self.git_timeout)
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
            reading.comparison = compare_with_cluster(desired, LiveReader(view.client, view.discovery, access),
                                                      spec.settings)
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
        comparison = reading.comparison
        assert comparison is not None and reading.spec is not None
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
            previous=ledger.active(),
            incomplete=incomplete,
            revision=reading.revision,
            errors=[*reading.load_errors, *comparison.read_errors, *comparison.result.errors],
            read_errors=len(comparison.read_errors),
            interval_seconds=reading.spec.interval_seconds,
            remediations=remediations,
        )

    def _credentials(self, spec: PolicySpec, view: IdentityView, access: ReadAccess) -> GitCredentials | None:
        """The secretRef Secret, read as the policy's identity: never one its service account could not read."""
        assert spec.source is not None
        name = spec.source.secret_ref
        if not name:
            return None
        where = f"spec.source.secretRef: Secret {spec.namespace}/{name}"
        try:
            secret = view.client.get(resource_path("", "v1", "secrets", spec.namespace, name))
        except ApiError as exc:
            if exc.not_found:
                raise _Stalled("CredentialsError", f"{where} not found") from None
            if exc.forbidden:
                raise _Stalled("CredentialsError", f"{where} cannot be read: {access.forbidden(exc.message)}") from None
            raise _Stalled("CredentialsError", f"{where} cannot be read: {exc.status} {exc.reason}") from None
        try:
            return credentials_for_repo(secret, spec.source.repo_url)
        except GitSourceError as exc:
            raise _Stalled("CredentialsError", f"{where}: {exc.message}") from None

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

    def _publish(self, body: dict[str, Any], outcome: ScanOutcome, ledger: ReportLedger, reading: _Reading) -> None:
        ref = outcome.policy
        previous = dict(body.get("status") or {})
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
        try:
            self.status.write(ref, status)
        except ApiError as exc:
            if not exc.not_found:  # a policy deleted meanwhile has no status to write
                log.warning("cannot write the status of %s: %s", ref.id, exc)

    # ----- this process stops scanning a policy -----

    def release(self, body: dict[str, Any]) -> None:
        """Another replica leads now, or the operator stops: stop exporting what this one knew."""
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


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
