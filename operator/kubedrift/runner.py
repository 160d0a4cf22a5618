"""`kubedrift run`: the kopf operator plus the HTTP server (health now; metrics and API plug in)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import tempfile
from typing import Any

import kopf

from kubedrift import digest
from kubedrift import observers as scan_observers
from kubedrift.cluster import digest_key
from kubedrift.cluster.access import DEFAULT_ADMIN_NAMESPACE, Tenancy
from kubedrift.cluster.client import ApiError, KubeClient
from kubedrift.engine import Engine, ScanObserver
from kubedrift.handlers import PolicyLoops, register
from kubedrift.policy import parse_duration
from kubedrift.publish.health import Readiness, create_app, start_server
from kubedrift.scheduling import DEFAULT_MIN_INTERVAL, DEFAULT_SCAN_WORKERS, FairScanPool
from kubedrift.source.git import GitCache

log = logging.getLogger("kubedrift")

PEERING_NAME = "kubedrift"
FINALIZER = "kubedrift.dev/cleanup"
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
    parser.add_argument("--api-audiences", default=_env("KUBEDRIFT_API_AUDIENCES", ""),
                        help="comma list of token audiences the REST API accepts, asked for in TokenReviews "
                             "(env KUBEDRIFT_API_AUDIENCES; default: the API server's own audience)")
    parser.add_argument("--log-format", choices=("plain", "full", "json"),
                        default=_env("KUBEDRIFT_LOG_FORMAT", "plain"),
                        help="log line format (env KUBEDRIFT_LOG_FORMAT)")
    parser.add_argument("--peering-name", default=PEERING_NAME, help="kopf peering object (for HA replicas)")
    parser.add_argument("--priority", type=int, default=None,
                        help="peering priority (default: random, so one replica of several leads)")
    parser.add_argument("--standalone", action="store_true", help="run without kopf peering")
    parser.add_argument("--verbose", action="store_true", help="debug logging")


def _admin_namespaces_default() -> str:
    """KUBEDRIFT_ADMIN_NAMESPACES when set (even empty: no admin namespace), else POD_NAMESPACE, else kubedrift."""
    configured = os.environ.get("KUBEDRIFT_ADMIN_NAMESPACES")
    if configured is not None:
        return configured
    return _env("POD_NAMESPACE", DEFAULT_ADMIN_NAMESPACE) or DEFAULT_ADMIN_NAMESPACE


def build_observers(args: argparse.Namespace, readiness: Readiness, app: Any, client: KubeClient) -> list[ScanObserver]:
    """Scan observers (history store, metrics) and their routes (/metrics, /api/v1) on `app`."""
    audiences = [a.strip() for a in str(args.api_audiences or "").split(",") if a.strip()]
    return scan_observers.build(app, readiness, client, mongodb_uri=args.mongodb_uri, namespace=args.namespace,
                                api_audiences=audiences)


def main(args: argparse.Namespace) -> int:
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()])
    try:
        retention = parse_duration(args.report_retention, "--report-retention")
        git_timeout = parse_duration(args.git_timeout, "--git-timeout")
        min_interval = parse_duration(args.min_interval, "--min-interval")
        tenancy = Tenancy.parse(args.admin_namespaces, args.default_service_account)
    except ValueError as exc:  # PolicyError too
        log.error("%s", exc)
        return 1
    if args.scan_workers < 1:
        log.error("--scan-workers: must be at least 1, not %d", args.scan_workers)
        return 1
    log.info("admin namespaces: %s; default service account: %s",
             ", ".join(sorted(tenancy.admin_namespaces)) or "none", tenancy.default_service_account or "none")
    try:
        client = KubeClient.from_environment(args.kubeconfig)
    except Exception as exc:
        log.error("no Kubernetes configuration: %s", exc)
        return 1
    namespace = _env("POD_NAMESPACE", DEFAULT_ADMIN_NAMESPACE) or DEFAULT_ADMIN_NAMESPACE  # the operator's own
    try:
        digest.use_key(digest_key.load_or_create(client, namespace))
    except (ApiError, digest.DigestKeyError) as exc:
        log.error("cannot load the digest key (Secret %s/%s): %s", namespace, digest_key.SECRET_NAME, exc)
        return 1
    readiness = Readiness()
    app = create_app(readiness)
    observers = build_observers(args, readiness, app, client)
    instance = os.environ.get("HOSTNAME", "") or f"kubedrift-{os.getpid()}"
    engine = Engine(client, GitCache(args.git_cache), retention_seconds=retention, git_timeout=git_timeout,
                    observers=observers, instance=instance, tenancy=tenancy, min_interval=min_interval)
    registry = kopf.OperatorRegistry()
    pool = FairScanPool(args.scan_workers)
    register(registry, PolicyLoops(engine, pool, min_interval=min_interval))
    priority = args.priority if args.priority is not None else random.randint(1, 32767)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.peering.name = args.peering_name
        settings.peering.priority = priority
        settings.peering.mandatory = False
        settings.peering.clusterwide = args.namespace is None
        settings.watching.server_timeout = WATCH_SERVER_TIMEOUT
        settings.watching.client_timeout = WATCH_CLIENT_TIMEOUT
        settings.watching.connect_timeout = CONNECT_TIMEOUT
        settings.persistence.finalizer = FINALIZER
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kubedrift.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="kubedrift.dev", key="last-handled-configuration")
        settings.posting.level = logging.WARNING  # kopf's own events only for problems
        settings.posting.reporting_component = "kubedrift"
        settings.posting.reporting_instance = instance

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(args, registry, app, readiness, priority, client))
    finally:
        pool.close()
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


async def _serve(args: argparse.Namespace, registry: kopf.OperatorRegistry, app: Any, readiness: Readiness,
                 priority: int, client: KubeClient) -> None:
    runner = await start_server(app, args.http_port)
    log.info("serving /healthz and /readyz on port %d", args.http_port)
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
            clusterwide=args.namespace is None,
            namespaces=[args.namespace] if args.namespace else (),
            standalone=True if args.standalone else None,
            priority=priority,
            peering_name=args.peering_name,
            ready_flag=ready_flag,
        )
    finally:
        marker.cancel()
        readiness.mark_not_ready("stopping")
        await runner.cleanup()
