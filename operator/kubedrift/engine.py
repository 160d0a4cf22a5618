"""One scan of one DriftPolicy: source -> cluster -> diff -> (observers: store, metrics) -> publish.

The engine is synchronous and thread-safe; the kopf handlers run each scan in a worker thread and
never run two scans of one policy at once. A store or metrics exporter plugs in as a
`ScanObserver` (see `Engine(observers=...)`); the engine does not know what they do.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubedrift.cluster.access import ClusterViews, IdentityView, ReadAccess, Tenancy
from kubedrift.cluster.client import ApiError, KubeClient, resource_path
from kubedrift.cluster.live import LiveReader
from kubedrift.diff.compare import compare_objects, identity
from kubedrift.model import DiffSettings, KubeObject, LoadError, ResourceDrift, ScanResult
from kubedrift.policy import PolicyError, PolicySpec, parse_policy
from kubedrift.publish.events import EventRecorder
from kubedrift.publish.reports import PolicyRef, ReportPublisher
from kubedrift.publish.status import ScanStatus, StatusWriter, build_status, one_line
from kubedrift.source.git import Checkout, GitCache, GitCredentials, GitSourceError, credentials_for_repo
from kubedrift.source.manifests import load_manifests

log = logging.getLogger(__name__)

SCAN_REQUEST_ANNOTATION = "kubedrift.dev/scan-requested-at"
CONTEXT_KINDS = (("autoscaling", "HorizontalPodAutoscaler"),)


@dataclass
class ScanOutcome:
    policy: PolicyRef
    started: datetime.datetime
    finished: datetime.datetime
    spec: PolicySpec | None = None
    revision: str | None = None
    result: ScanResult | None = None
    errors: list[LoadError] = field(default_factory=list)
    """Files and kinds that could not be read; everything else was compared."""
    stalled_reason: str | None = None
    stalled_message: str = ""
    detected: list[ResourceDrift] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    compared: set[str] = field(default_factory=set)
    """Resource ids whose live state was read and compared (their reports may resolve)."""
    read_errors: int = 0
    """Kinds/namespaces the Kubernetes API would not list (part of `errors`)."""

    @property
    def ok(self) -> bool:
        return self.stalled_reason is None and self.result is not None

    @property
    def duration(self) -> float:
        return (self.finished - self.started).total_seconds()


@dataclass
class Comparison:
    result: ScanResult
    compared: set[str]
    """Ids of the desired objects whose live twins could be listed (and so were compared)."""
    read_errors: list[LoadError]
    """Kinds/namespaces the API would not list: their objects are not compared, never `Missing`."""


def compare_with_cluster(desired: Sequence[KubeObject], reader: LiveReader, settings: DiffSettings) -> Comparison:
    """Read the live twins of `desired` (and the autoscalers that own replicas) and compare them."""
    keys = [identity(o) for o in desired]
    live = reader.read(keys, CONTEXT_KINDS, api_versions={k: o.api_version for k, o in zip(keys, desired, strict=True)})
    comparable = [o for o, k in zip(desired, keys, strict=True) if live.readable(k)]
    return Comparison(
        result=compare_objects(comparable, live.objects, settings, crds=live.crds),
        compared={k.id for k in keys if live.readable(k)},
        read_errors=live.errors,
    )


class ScanObserver(Protocol):
    """Something that wants every scan's outcome (MongoDB history, Prometheus metrics, ...).

    Called in the scan's worker thread after the comparison, before reports are published.
    An observer that raises is logged and skipped; it never fails the scan.
    """

    def scan_finished(self, outcome: ScanOutcome) -> None: ...

    def policy_deleted(self, policy: PolicyRef) -> None: ...


class _Stalled(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


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
        self._lock = threading.Lock()
        self._manifests: dict[str, tuple[tuple[Any, ...], list[KubeObject], list[LoadError]]] = {}

    # ----- one scan -----

    def scan(self, body: dict[str, Any]) -> ScanOutcome:
        ref = policy_ref(body)
        outcome = ScanOutcome(policy=ref, started=_now(), finished=_now())
        try:
            self._compare(body, outcome)
        except _Stalled as stalled:
            outcome.stalled_reason, outcome.stalled_message = stalled.reason, stalled.message
        except ApiError as exc:
            outcome.stalled_reason, outcome.stalled_message = "ClusterUnavailable", f"Kubernetes API: {exc}"
        outcome.finished = _now()
        for observer in self.observers:
            try:
                observer.scan_finished(outcome)
            except Exception:
                log.exception("scan observer %s failed for %s", type(observer).__name__, ref.id)
        self._publish(body, outcome)
        if outcome.ok and outcome.result is not None:
            log.info("scanned %s at %s: %d resources, %d drifted, %d errors", ref.id, (outcome.revision or "")[:12],
                     outcome.result.resources, outcome.result.drifted, len(outcome.errors))
        else:
            log.warning("scan of %s stalled: %s: %s", ref.id, outcome.stalled_reason, outcome.stalled_message)
        return outcome

    def _compare(self, body: dict[str, Any], outcome: ScanOutcome) -> None:
        try:
            spec = parse_policy(body)
        except PolicyError as exc:
            raise _Stalled("InvalidPolicy", str(exc)) from None
        spec.interval_seconds = max(spec.interval_seconds, self.min_interval)
        outcome.spec = spec
        assert spec.source is not None  # parse_policy requires it
        access = self.tenancy.access_for(spec.namespace, spec.service_account_name)
        view = self.views.view(access)
        credentials = self._credentials(spec, view, access)
        try:
            checkout = self.git_cache.checkout(spec.source.repo_url, spec.source.revision, namespace=spec.namespace,
                                               credentials=credentials, timeout=self.git_timeout)
        except GitSourceError as exc:
            raise _Stalled("GitError", exc.message) from None
        outcome.revision = checkout.sha
        view.refresh_discovery()
        desired, load_errors = self._desired(outcome.policy, spec, checkout, view)
        if load_errors and not desired:
            first = load_errors[0]
            raise _Stalled("ManifestError", f"no manifest could be read: {first.file}: {first.message}")
        if spec.namespaces:
            desired = [o for o in desired if not o.namespace or o.namespace in spec.namespaces]
        if any(view.discovery.resolve(k.group, k.kind) is None for k in map(identity, desired)):
            view.refresh_discovery(force=True)
        comparison = compare_with_cluster(desired, LiveReader(view.client, view.discovery, access), spec.settings)
        outcome.result = comparison.result
        outcome.compared = comparison.compared
        outcome.errors = [*load_errors, *comparison.read_errors, *comparison.result.errors]
        outcome.read_errors = len(comparison.read_errors)

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
        root = os.path.realpath(checkout.path)
        paths: list[str] = []
        outside: list[LoadError] = []
        for path in spec.source.paths:
            full = os.path.realpath(os.path.join(root, path))
            if full == root or full.startswith(root + os.sep):
                paths.append(os.path.join(checkout.path, os.path.relpath(full, root)))
            else:
                outside.append(LoadError(path, "spec.source.paths: the path leads out of the repository"))
        objects, errors = load_manifests(paths, default_namespace=spec.settings.default_namespace,
                                         scopes=view.discovery, root=checkout.path)
        errors += outside
        prefix = checkout.path.rstrip("/") + "/"
        errors = [LoadError(e.file[len(prefix):] if e.file.startswith(prefix) else e.file,
                            e.message.replace(prefix, "")) for e in errors]
        for obj in objects:
            if obj.source.startswith(prefix):
                obj.source = obj.source[len(prefix):]
        with self._lock:
            self._manifests[ref.id] = (cache_key, list(objects), list(errors))
        return objects, errors

    # ----- publish -----

    def _publish(self, body: dict[str, Any], outcome: ScanOutcome) -> None:
        ref = outcome.policy
        now = outcome.finished
        previous = dict(body.get("status") or {})
        if outcome.ok and outcome.result is not None:
            result = outcome.result
            synced = self.reports.sync(ref, result.drifts, outcome.revision or "", now,
                                       settled=outcome.compared, complete=not outcome.errors)
            outcome.detected, outcome.resolved = synced.detected, synced.resolved
            for message in synced.errors:
                outcome.errors.append(LoadError("DriftReport", message))
            self.events.drift_changes(ref, synced.detected, synced.resolved, now)
        else:
            conditions: list[dict[str, Any]] = list(previous.get("conditions") or [])
            before = next((c for c in conditions if c.get("type") == "Stalled"), {})
            message = one_line(f"{outcome.stalled_reason}: {outcome.stalled_message}")
            if before.get("status") != "True" or before.get("message") != one_line(outcome.stalled_message):
                self.events.post(ref, "ScanFailed", message, warning=True, now=now)
        meta = body.get("metadata") or {}
        status = build_status(
            ScanStatus(
                generation=int(meta.get("generation") or 0),
                now=now,
                result=outcome.result if outcome.ok else None,
                revision=outcome.revision,
                errors=outcome.errors,
                stalled_reason=outcome.stalled_reason,
                stalled_message=outcome.stalled_message,
                scan_request=(meta.get("annotations") or {}).get(SCAN_REQUEST_ANNOTATION),
            ),
            previous,
        )
        try:
            self.status.write(ref, status)
        except ApiError as exc:
            if not exc.not_found:  # a policy deleted meanwhile has no status to write
                log.warning("cannot write the status of %s: %s", ref.id, exc)

    # ----- policy gone -----

    def forget(self, body: dict[str, Any]) -> int:
        """The policy is being deleted: remove its reports and cached state."""
        ref = policy_ref(body)
        with self._lock:
            self._manifests.pop(ref.id, None)
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
