"""`kubedrift run`: the kopf operator plus the HTTP server (health, metrics, API).

Peering is mandatory unless `--standalone`: two replicas must never both scan. The operator creates its
peering object when it is absent (cluster/peering.py); a missing peering CRD (deploy/peering.yaml) stops
the start with an error instead of falling back to standalone.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import logging
import os
import random
import tempfile
from dataclasses import dataclass
from typing import Any

import kopf

from kubedrift import digest
from kubedrift import observers as scan_observers
from kubedrift.cluster import digest_key
from kubedrift.cluster.access import DEFAULT_ADMIN_NAMESPACE, Tenancy
from kubedrift.cluster.cache import LiveCache
from kubedrift.cluster.client import ApiError, KubeClient
from kubedrift.cluster.peering import Peering, PeeringError, ensure_peering
from kubedrift.engine import Engine
from kubedrift.handlers import PolicyLoops, register
from kubedrift.incremental import IncrementalScans
from kubedrift.live_changes import LiveChanges
from kubedrift.model import ANNOTATION_PREFIX, FINALIZER
from kubedrift.policy import parse_duration
from kubedrift.publish.delivery import Notifier
from kubedrift.publish.health import Readiness, create_app, start_server
from kubedrift.publish.status import StatusWriter
from kubedrift.scheduling import DEFAULT_MIN_INTERVAL, DEFAULT_SCAN_WORKERS, FairScanPool
from kubedrift.source.git import ALLOW_INSECURE_HTTP_ENV, GitCache

log = logging.getLogger("kubedrift")

PEERING_NAME = "kubedrift"
WATCH_SERVER_TIMEOUT = 300.0
WATCH_CLIENT_TIMEOUT = 330.0
CONNECT_TIMEOUT = 10.0
KUBERNETES_CHECK_INTERVAL = 30.0


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value else default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--namespace", default=_env("KUBEDRIFT_NAMESPACE"),
                        help="watch DriftPolicies in this namespace only (default: cluster-wide)")
    parser.add_argument("--kubeconfig", default=_env("KUBECONFIG"),
                        help="kubeconfig file (env KUBECONFIG; default: in-cluster config, then ~/.kube/config)")
    parser.add_argument("--admin-namespaces", default=_admin_namespaces_default(),
                        help="comma list of namespaces whose DriftPolicies read with the operator's own rights "
                             "(env KUBEDRIFT_ADMIN_NAMESPACES; default: POD_NAMESPACE, else kubedrift; "
                             "empty: none). Policies elsewhere read only their own namespace, or impersonate "
                             "spec.serviceAccountName")
    parser.add_argument("--default-service-account", default=_env("KUBEDRIFT_DEFAULT_SERVICE_ACCOUNT"),
                        help="service account that policies outside the admin namespaces impersonate when they "
                             "name none (env KUBEDRIFT_DEFAULT_SERVICE_ACCOUNT; lockdown, as in Flux)")
    parser.add_argument("--http-port", type=int, default=int(_env("KUBEDRIFT_HTTP_PORT", "8080") or 8080),
                        help="port of /healthz, /readyz, /metrics and /api/v1 (env KUBEDRIFT_HTTP_PORT, 8080)")
    parser.add_argument("--git-cache", default=_env("KUBEDRIFT_GIT_CACHE",
                                                    os.path.join(tempfile.gettempdir(), "kubedrift-git")),
                        help="directory of the shared git clone cache (env KUBEDRIFT_GIT_CACHE)")
    parser.add_argument("--mongodb-uri", default=_env("MONGODB_URI"),
                        help="MongoDB for drift history (env MONGODB_URI; optional)")
    parser.add_argument("--report-retention", default=_env("KUBEDRIFT_REPORT_RETENTION", "24h"),
                        help="how long Resolved DriftReports stay (env KUBEDRIFT_REPORT_RETENTION, 24h)")
    parser.add_argument("--git-timeout", default=_env("KUBEDRIFT_GIT_TIMEOUT", "60s"),
                        help="time limit of one fetch (env KUBEDRIFT_GIT_TIMEOUT, 60s)")
    # Bounded work and the API's callers (see kubedrift.scheduling and publish/api_auth.py).
    parser.add_argument("--min-interval", default=_env("KUBEDRIFT_MIN_INTERVAL", DEFAULT_MIN_INTERVAL),
                        help="no policy is scanned on schedule more often than this, whatever its spec.interval "
                             f"(env KUBEDRIFT_MIN_INTERVAL, {DEFAULT_MIN_INTERVAL})")
    parser.add_argument("--scan-workers", type=int,  # argparse converts (and checks) the env's string too
                        default=_env("KUBEDRIFT_SCAN_WORKERS", str(DEFAULT_SCAN_WORKERS)),
                        help="scans running at once, at most half of them from one namespace "
                             f"(env KUBEDRIFT_SCAN_WORKERS, {DEFAULT_SCAN_WORKERS})")
    parser.add_argument("--notification-attempts", type=int,
                        default=_env("KUBEDRIFT_NOTIFICATION_ATTEMPTS", "5"),
                        help="tries per notification message before it is given up "
                             "(env KUBEDRIFT_NOTIFICATION_ATTEMPTS, 5)")
    parser.add_argument("--notification-backoff", default=_env("KUBEDRIFT_NOTIFICATION_BACKOFF", "2s"),
                        help="wait before the first retry of a notification, doubled at each retry up to 60s "
                             "(env KUBEDRIFT_NOTIFICATION_BACKOFF, 2s)")
    parser.add_argument("--api-audiences", default=_env("KUBEDRIFT_API_AUDIENCES", ""),
                        help="comma list of token audiences the REST API accepts, asked for in TokenReviews "
                             "(env KUBEDRIFT_API_AUDIENCES; default: the API server's own audience)")
    parser.add_argument("--log-format", choices=("plain", "full", "json"),
                        default=_env("KUBEDRIFT_LOG_FORMAT", "plain"),
                        help="log line format (env KUBEDRIFT_LOG_FORMAT)")
    parser.add_argument("--peering-name", default=PEERING_NAME, help="kopf peering object (for HA replicas)")
    parser.add_argument("--priority", type=int, default=None,
                        help="peering priority (default: random, so one replica of several leads)")
    parser.add_argument("--standalone", action="store_true",
                        help="run without kopf peering (a single replica; else the peering CRDs must be installed)")
    parser.add_argument("--verbose", action="store_true", help="debug logging")


def _admin_namespaces_default() -> str:
    """KUBEDRIFT_ADMIN_NAMESPACES when set (even empty: no admin namespace), else POD_NAMESPACE, else kubedrift."""
    configured = os.environ.get("KUBEDRIFT_ADMIN_NAMESPACES")
    if configured is not None:
        return configured
    return _env("POD_NAMESPACE", DEFAULT_ADMIN_NAMESPACE) or DEFAULT_ADMIN_NAMESPACE


@dataclass(frozen=True)
class RunSettings:
    """Everything `kubedrift run` is configured with (flags, with environment fallbacks), read once here;
    nothing deeper reads the environment."""

    namespace: str | None
    kubeconfig: str | None
    http_port: int
    git_cache: str
    mongodb_uri: str | None
    report_retention: float
    git_timeout: float
    log_format: str
    peering_name: str
    priority: int
    standalone: bool
    verbose: bool
    instance: str
    tenancy: Tenancy
    min_interval: float
    scan_workers: int
    api_audiences: tuple[str, ...]
    notification_attempts: int = 5
    notification_backoff: float = 2.0
    allow_insecure_http: bool = False
    """KUBEDRIFT_ALLOW_INSECURE_HTTP=1: notification receivers over plain http (tests, closed networks)."""

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RunSettings:
        """Raises ValueError (PolicyError too) naming the flag of an invalid value."""
        return cls(
            namespace=args.namespace or None,
            kubeconfig=args.kubeconfig,
            http_port=args.http_port,
            git_cache=args.git_cache,
            mongodb_uri=args.mongodb_uri or None,
            report_retention=parse_duration(args.report_retention, "--report-retention"),
            git_timeout=parse_duration(args.git_timeout, "--git-timeout"),
            log_format=args.log_format,
            peering_name=args.peering_name,
            priority=args.priority if args.priority is not None else random.randint(1, 32767),
            standalone=bool(args.standalone),
            verbose=bool(args.verbose),
            instance=_env("HOSTNAME") or f"kubedrift-{os.getpid()}",
            tenancy=Tenancy.parse(args.admin_namespaces, args.default_service_account),
            min_interval=parse_duration(args.min_interval, "--min-interval"),
            scan_workers=_at_least_one(args.scan_workers, "--scan-workers"),
            api_audiences=tuple(a.strip() for a in str(args.api_audiences or "").split(",") if a.strip()),
            notification_attempts=_at_least_one(args.notification_attempts, "--notification-attempts"),
            notification_backoff=parse_duration(args.notification_backoff, "--notification-backoff"),
            allow_insecure_http=_env(ALLOW_INSECURE_HTTP_ENV) == "1",
        )


def _at_least_one(value: int, flag: str) -> int:
    if value < 1:
        raise ValueError(f"{flag}: must be at least 1, not {value}")
    return value


def main(args: argparse.Namespace) -> int:
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    try:
        run = RunSettings.from_args(args)
    except ValueError as exc:  # PolicyError too
        log.error("%s", exc)
        return 1
    tenancy = run.tenancy
    log.info("admin namespaces: %s; default service account: %s",
             ", ".join(sorted(tenancy.admin_namespaces)) or "none", tenancy.default_service_account or "none")
    try:
        client = KubeClient.from_environment(run.kubeconfig)
    except Exception as exc:
        log.error("no Kubernetes configuration: %s", exc)
        return 1
    namespace = _env("POD_NAMESPACE", DEFAULT_ADMIN_NAMESPACE) or DEFAULT_ADMIN_NAMESPACE  # the operator's own
    try:
        digest.use_key(digest_key.load_or_create(client, namespace))
    except (ApiError, digest.DigestKeyError) as exc:
        log.error("cannot load the digest key (Secret %s/%s): %s", namespace, digest_key.SECRET_NAME, exc)
        return 1
    if not run.standalone:
        peering = Peering(run.peering_name, run.namespace)
        try:
            if ensure_peering(client, peering):
                log.info("created the peering object %s", peering)
        except PeeringError as exc:
            log.error("%s", exc)
            return 1
    readiness = Readiness()
    app = create_app(readiness)
    notifier = Notifier(attempts=run.notification_attempts, backoff=run.notification_backoff,
                        on_state=StatusWriter(client).write_notifications, allow_http=run.allow_insecure_http).start()
    atexit.register(notifier.close)
    observers = scan_observers.build(app, readiness, client, mongodb_uri=run.mongodb_uri, namespace=run.namespace,
                                     api_audiences=run.api_audiences, notifier=notifier)
    cache = LiveCache()
    engine = Engine(client, GitCache(run.git_cache), retention_seconds=run.report_retention,
                    git_timeout=run.git_timeout, observers=observers, instance=run.instance, tenancy=tenancy,
                    min_interval=run.min_interval, notifier=notifier, cache=cache)
    live_changes = LiveChanges(cache, IncrementalScans(engine).refresh)
    live_changes.start()
    registry = kopf.OperatorRegistry()
    pool = FairScanPool(run.scan_workers)
    register(registry, PolicyLoops(engine, pool, min_interval=run.min_interval))

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.peering.name = run.peering_name
        settings.peering.priority = run.priority
        settings.peering.mandatory = not run.standalone
        settings.peering.standalone = run.standalone
        settings.peering.clusterwide = run.namespace is None
        settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
        settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
        settings.watching.connect_timeout = CONNECT_TIMEOUT
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
        settings.posting.level = logging.WARNING  # kopf's own events only for problems
        settings.posting.reporting_component = "kubedrift"
        settings.posting.reporting_instance = run.instance

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(run, registry, app, readiness, client))
    finally:
        pool.close()
        live_changes.stop()
        cache.stop()
    return 0


async def _check_kubernetes(client: KubeClient, readiness: Readiness) -> None:
    """Degrade /readyz's `kubernetes` while the API server does not answer /version; recover when it does."""
    try:
        await asyncio.to_thread(client.get, "/version")
    except ApiError as exc:
        if "kubernetes" not in readiness.degraded:
            log.warning("the Kubernetes API did not answer /version: %s", exc)
        readiness.degrade("kubernetes")
    else:
        if "kubernetes" in readiness.degraded:
            log.info("the Kubernetes API answers again")
        readiness.recover("kubernetes")


async def _serve(run: RunSettings, registry: kopf.OperatorRegistry, app: Any, readiness: Readiness,
                 client: KubeClient) -> None:
    runner = await start_server(app, run.http_port)
    log.info("serving /healthz and /readyz on port %d", run.http_port)
    ready_flag = asyncio.Event()

    async def mark_ready() -> None:
        await ready_flag.wait()
        await _check_kubernetes(client, readiness)
        readiness.mark_ready()
        while True:
            await asyncio.sleep(KUBERNETES_CHECK_INTERVAL)
            await _check_kubernetes(client, readiness)

    marker = asyncio.create_task(mark_ready())
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=run.namespace is None,
            namespaces=[run.namespace] if run.namespace else (),
            standalone=True if run.standalone else None,
            priority=run.priority,
            peering_name=run.peering_name,
            ready_flag=ready_flag,
        )
    finally:
        marker.cancel()
        readiness.mark_not_ready("stopping")
        await runner.cleanup()
