"""The REST API over real HTTP: MongoDB wire server behind it, bearer tokens checked by an emulated
Kubernetes API (TokenReview + SubjectAccessReview), schemathesis against the OpenAPI document."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp.web
import pymongo
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from prometheus_client.parser import text_string_to_metric_families
from tests.support.drifts import drift
from tests.support.emulator import EmulatorServer
from tests.support.mongo import mongo_base_uri  # noqa: F401
from tests.support.outcomes import Scans
from tests.support.ports import free_port
from tests.support.reviews import ADMIN, READER, USERS, ReviewingEmulator

from kubedrift.cluster.client import KubeClient
from kubedrift.model import SCAN_REQUEST_ANNOTATION, Severity
from kubedrift.observers import store_health_hook
from kubedrift.publish.api import register_api
from kubedrift.publish.api_auth import FAILED_AUTH_LIMIT, FailedAuthLimiter, KubeAuthorizer
from kubedrift.publish.health import Readiness, create_app, start_server
from kubedrift.publish.metrics import DriftMetrics
from kubedrift.publish.openapi import document
from kubedrift.publish.scan_trigger import AnnotationScanTrigger
from kubedrift.runner import _check_kubernetes
from kubedrift.store import DriftStore

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
class AppThread:
    """The operator's aiohttp application served from a background thread on 127.0.0.1."""

    def __init__(self, app: aiohttp.web.Application) -> None:
        self.app = app
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.runner: aiohttp.web.AppRunner | None = None

    def __enter__(self) -> str:
        self.thread.start()
        fut = asyncio.run_coroutine_threadsafe(start_server(self.app, self.port, host="127.0.0.1"), self.loop)
        self.runner = fut.result(timeout=30)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        assert self.runner is not None
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmulatorServer, KubeClient]]:
    server = EmulatorServer()
    server.emulator = ReviewingEmulator()
    server.start()
    try:
        server.register_crd_file(ROOT / "crds" / "driftpolicy.yaml")
        server.seed({"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftPolicy",
                     "metadata": {"namespace": "ops", "name": "shop"},
                     "spec": {"source": {"repoURL": "http://127.0.0.1:1/repo.git"}, "interval": "5m"}})
        kubeconfig = server.write_kubeconfig(tmp_path_factory.mktemp("kube") / "config")
        yield server, KubeClient.from_environment(str(kubeconfig), timeout=10)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def store(mongo_base_uri: str) -> Iterator[DriftStore]:  # noqa: F811
    database = f"kubedrift_api_{uuid.uuid4().hex[:8]}"
    s = DriftStore(f"{mongo_base_uri}/{database}", timeout_ms=2000)
    s.start()
    web = drift("Deployment", "shop", "web")
    api = drift("Service", "shop", "api", severity=Severity.MEDIUM)
    pods = [drift("Deployment", "shop", f"worker-{i}", severity=Severity.LOW) for i in range(5)]
    shop = Scans("ops", "shop")
    s.record_scan(shop.scan(web, api, *pods, revision="r1", at=T0))
    s.record_scan(shop.scan(web, *pods, revision="r2", at=T0 + timedelta(hours=1)))
    s.record_scan(Scans("ops", "billing").scan(drift("ConfigMap", "billing", "cfg", severity=Severity.CRITICAL),
                                              revision="r1", at=T0))
    assert s.flush(20)
    yield s
    s.close()
    with pymongo.MongoClient(mongo_base_uri) as client:
        client.drop_database(database)


@pytest.fixture(scope="module")
def metrics() -> DriftMetrics:
    m = DriftMetrics()
    m.observe(Scans().scan(drift("Deployment", "shop", "web"), at=T0), duration=1.0)
    return m


@pytest.fixture(scope="module")
def base_url(k8s: tuple[EmulatorServer, KubeClient], store: DriftStore, metrics: DriftMetrics) -> Iterator[str]:
    _, client = k8s
    app = create_app()
    # This module's tests fail to authenticate on purpose, all from 127.0.0.1: a limit they do not reach.
    register_api(app, store=store, authorizer=KubeAuthorizer(client), trigger=AnnotationScanTrigger(client),
                 metrics=metrics, limiter=FailedAuthLimiter(limit=10_000))
    with AppThread(app) as url:
        yield url


def get(base_url: str, path: str, headers: dict[str, str] | None = READER, **params: Any) -> requests.Response:
    return requests.get(base_url + path, headers=headers, params=params, timeout=30)


def test_tokens_missing_invalid_forbidden_and_valid(base_url: str) -> None:
    missing = get(base_url, "/api/v1/drift-records", headers=None)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert "missing bearer token" in missing.json()["error"]
    invalid = get(base_url, "/api/v1/drift-records", headers={"Authorization": "Bearer made-up"})
    assert invalid.status_code == 401 and invalid.json()["status"] == 401
    basic = get(base_url, "/api/v1/drift-records", headers={"Authorization": "Basic cmVhZGVyLXRva2Vu"})
    assert basic.status_code == 401
    stranger = get(base_url, "/api/v1/drift-records", headers={"Authorization": "Bearer stranger-token"})
    assert stranger.status_code == 403 and "'bob' may not list driftreports" in stranger.json()["error"]
    assert get(base_url, "/api/v1/drift-records").status_code == 200
    assert get(base_url, "/api/v1/openapi.json", headers=None).status_code == 401


def test_reviews_are_cached_per_token(base_url: str, k8s: tuple[EmulatorServer, KubeClient]) -> None:
    emulator = k8s[0].emulator
    token = {"Authorization": "Bearer admin-token"}
    before = len(emulator.reviews)
    for _ in range(3):
        assert get(base_url, "/api/v1/statistics", headers=token).status_code == 200
    new = emulator.reviews[before:]
    assert len(new) <= 2  # at most one TokenReview and one SubjectAccessReview for three calls
    assert all("admin-token" not in str(r.get("status")) for r in new)


def test_records_filters_pagination_and_errors(base_url: str) -> None:
    page = get(base_url, "/api/v1/drift-records", policy="ops/shop", limit=3, offset=0).json()
    assert page["total"] == 7 and len(page["items"]) == 3 and page["limit"] == 3
    rest = get(base_url, "/api/v1/drift-records", policy="ops/shop", limit=10, offset=3).json()
    ids = {i["resourceId"] for i in page["items"] + rest["items"]}
    assert len(ids) == 7

    active = get(base_url, "/api/v1/drift-records/active", policy="ops/shop").json()
    assert active["total"] == 6 and all(i["state"] == "active" for i in active["items"])
    resolved = get(base_url, "/api/v1/drift-records/resolved").json()
    assert [i["resourceId"] for i in resolved["items"]] == ["Service:shop:api"]
    assert resolved["items"][0]["resolvedAt"] == "2026-03-01T13:00:00.000Z"
    assert get(base_url, "/api/v1/drift-records", severity="critical").json()["items"][0]["policy"] == "ops/billing"
    assert get(base_url, "/api/v1/drift-records", namespace="billing", kind="ConfigMap").json()["total"] == 1
    assert get(base_url, "/api/v1/drift-records", state="none").json()["total"] == 0

    one = get(base_url, "/api/v1/drift-records/Deployment:shop:web").json()
    assert one["state"] == "active" and one["occurrences"] == 2 and one["firstSeen"] == "2026-03-01T12:00:00.000Z"
    assert [e["type"] for e in one["events"]] == ["detected"]

    for params, field in [({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"offset": "-1"}, "offset"),
                          ({"state": "gone"}, "state"), ({"severity": "huge"}, "severity"),
                          ({"policy": "shop"}, "policy"), ({"colour": "red"}, "colour")]:
        bad = get(base_url, "/api/v1/drift-records", **params)
        assert bad.status_code == 400 and bad.json()["field"] == field, params
    assert get(base_url, "/api/v1/drift-records/active", state="resolved").status_code == 400
    missing = get(base_url, "/api/v1/drift-records/Deployment:shop:nothing")
    assert missing.status_code == 404 and missing.json()["status"] == 404
    assert get(base_url, "/api/v1/no-such-thing").status_code == 404


def test_statistics(base_url: str) -> None:
    stats = get(base_url, "/api/v1/statistics").json()
    assert stats["total"] == 8 and stats["active"] == 7 and stats["resolved"] == 1
    assert stats["resolvedPercent"] == 12.5
    assert stats["meanTimeToResolveSeconds"] == 3600.0
    assert stats["activeBySeverity"] == {"low": 5, "medium": 0, "high": 1, "critical": 1}
    billing = get(base_url, "/api/v1/statistics", policy="ops/billing").json()
    assert billing["total"] == 1 and billing["meanTimeToResolveSeconds"] is None
    assert get(base_url, "/api/v1/statistics", kind="Deployment").status_code == 400


def test_analyze_needs_patch_and_stamps_the_policy(base_url: str, k8s: tuple[EmulatorServer, KubeClient]) -> None:
    server, _ = k8s
    url = base_url + "/api/v1/analyze"
    denied = requests.post(url, headers=READER, params={"policy": "ops/shop"}, timeout=30)
    assert denied.status_code == 403 and "patch driftpolicies" in denied.json()["error"]
    accepted = requests.post(url, headers=ADMIN, params={"policy": "ops/shop"}, timeout=30)
    assert accepted.status_code == 202 and accepted.json() == {"requested": ["ops/shop"]}
    policy = server.get("kubedrift.dev/v1alpha1", "DriftPolicy", "ops", "shop")
    assert policy is not None
    stamp = policy["metadata"]["annotations"][SCAN_REQUEST_ANNOTATION]
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo is not None
    everything = requests.post(url, headers=ADMIN, timeout=30)
    assert everything.status_code == 202 and everything.json()["requested"] == ["ops/shop"]
    unknown = requests.post(url, headers=ADMIN, params={"policy": "ops/nope"}, timeout=30)
    assert unknown.status_code == 404 and unknown.json()["field"] == "policy"
    assert requests.post(url, headers=ADMIN, params={"policy": "nope"}, timeout=30).status_code == 400


def test_git_hook_scans_the_policies_of_the_pushed_repository(
        base_url: str, k8s: tuple[EmulatorServer, KubeClient]) -> None:
    server, _ = k8s
    for name, url in (("app-ssh", "git@git.example.com:Team/App.git"), ("other", "https://git.example.com/team/db")):
        if server.get("kubedrift.dev/v1alpha1", "DriftPolicy", "ops", name) is None:
            server.seed({"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftPolicy",
                         "metadata": {"namespace": "ops", "name": name},
                         "spec": {"source": {"repoURL": url}, "interval": "1h"}})
    url = base_url + "/api/v1/hooks/git"
    github_push = {"ref": "refs/heads/main", "repository": {
        "clone_url": "https://git.example.com/team/app.git", "ssh_url": "git@git.example.com:team/app.git"}}
    denied = requests.post(url, headers=READER, json=github_push, timeout=30)
    assert denied.status_code == 403 and "patch driftpolicies" in denied.json()["error"]
    assert requests.post(url, json=github_push, timeout=30).status_code == 401

    before = server.get("kubedrift.dev/v1alpha1", "DriftPolicy", "ops", "other")
    accepted = requests.post(url, headers=ADMIN, json=github_push, timeout=30)
    assert accepted.status_code == 202 and accepted.json() == {"requested": ["ops/app-ssh"]}
    stamped = server.get("kubedrift.dev/v1alpha1", "DriftPolicy", "ops", "app-ssh")
    assert stamped is not None and SCAN_REQUEST_ANNOTATION in stamped["metadata"]["annotations"]
    assert server.get("kubedrift.dev/v1alpha1", "DriftPolicy", "ops", "other") == before, "another repository"

    gitlab_push = {"object_kind": "push", "project": {"git_http_url": "https://git.example.com/team/db.git"}}
    assert requests.post(url, headers=ADMIN, json=gitlab_push, timeout=30).json() == {"requested": ["ops/other"]}
    named = requests.post(url, headers=ADMIN, params={"policy": "ops/other"}, timeout=30)
    assert named.status_code == 202 and named.json() == {"requested": ["ops/other"]}

    nothing = requests.post(url, headers=ADMIN, json={"zen": "Keep it logically awesome."}, timeout=30)
    assert nothing.status_code == 400 and nothing.json()["field"] == "body"
    garbage = requests.post(url, headers=ADMIN, data=b"\x00{not json", timeout=30)
    assert garbage.status_code == 400 and "not JSON" in garbage.json()["error"]
    deep = requests.post(url, headers=ADMIN, data=b"[" * 100_000, timeout=30)
    assert deep.status_code == 400, "a hostile nesting depth is a clear error, not a crash"


def test_metrics_endpoint_is_open_and_parses(base_url: str) -> None:
    answer = requests.get(base_url + "/metrics", timeout=30)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(answer.text)}
    first_seen = families["kubedrift_drift_first_seen_timestamp_seconds"].samples
    assert [(s.labels["name"], s.value) for s in first_seen] == [("web", T0.timestamp())]
    assert requests.get(base_url + "/healthz", timeout=30).json() == {"status": "ok"}


def test_store_outage_answers_503_json(k8s: tuple[EmulatorServer, KubeClient]) -> None:
    _, client = k8s
    dead = DriftStore(f"mongodb://127.0.0.1:{free_port()}/kubedrift", timeout_ms=200)
    app = create_app()
    register_api(app, store=dead, authorizer=KubeAuthorizer(client))
    with AppThread(app) as url:
        answer = get(url, "/api/v1/drift-records")
        assert answer.status_code == 503 and "MongoDB" in answer.json()["error"]
        assert get(url, "/api/v1/statistics").status_code == 503
    dead.close(flush_timeout=0)


schema = schemathesis.openapi.from_dict(document()).include(method="GET")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_read_endpoints_conform_to_the_openapi_document(case: schemathesis.Case, base_url: str) -> None:
    # The reader's token is injected into every case, which undoes schemathesis' negative mutations of the
    # Authorization header: such a "negative" case is a valid request, and its 200 is right. Missing and
    # refused tokens are tested explicitly above; every other check (no 5xx, documented status codes and
    # bodies) still runs on every case, negative ones included.
    case.call_and_validate(base_url=base_url, headers=READER,
                           excluded_checks=[schemathesis.checks.negative_data_rejection])


def token_reviews(emulator: Any, since: int) -> list[dict[str, Any]]:
    return [r for r in emulator.reviews[since:] if r.get("kind") == "TokenReview"]


def get_from(address: str, url: str, path: str, token: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    """GET with the connection's source address set (the whole of 127.0.0.0/8 is loopback on Linux)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30, source_address=(address, 0))
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        answer = conn.getresponse()
        return answer.status, dict(answer.getheaders()), json.loads(answer.read() or b"{}")
    finally:
        conn.close()


def test_brute_forced_tokens_get_429_before_any_token_review(k8s: tuple[EmulatorServer, KubeClient]) -> None:
    server, client = k8s
    app = create_app()
    register_api(app, store=None, authorizer=KubeAuthorizer(client))
    with AppThread(app) as url:
        before = len(server.emulator.reviews)
        answers = [get_from("127.0.0.3", url, "/api/v1/statistics", f"guess-{i}") for i in range(FAILED_AUTH_LIMIT)]
        assert [status for status, _, _ in answers] == [401] * FAILED_AUTH_LIMIT
        status, headers, body = get_from("127.0.0.3", url, "/api/v1/statistics", "guess-next")
        assert status == 429 and body["status"] == 429 and "too many failed authentications" in body["error"]
        assert 1 <= int(headers["Retry-After"]) <= 60
        # Limited means limited: no more TokenReviews for this address, even with a valid token.
        assert get_from("127.0.0.3", url, "/api/v1/statistics", "reader-token")[0] == 429
        assert len(token_reviews(server.emulator, before)) == FAILED_AUTH_LIMIT
        # Another address is not punished for it (drift history is off here: 503 past auth).
        assert get_from("127.0.0.4", url, "/api/v1/statistics", "reader-token")[0] == 503


def test_refused_tokens_are_cached_briefly_and_accepted_ones_expire(k8s: tuple[EmulatorServer, KubeClient]) -> None:
    server, client = k8s
    app = create_app()
    register_api(app, store=None, authorizer=KubeAuthorizer(client, positive_seconds=1.0, negative_seconds=1.0))
    with AppThread(app) as url:
        before = len(server.emulator.reviews)
        for _ in range(3):
            assert get(url, "/api/v1/statistics", headers={"Authorization": "Bearer wrong-1"}).status_code == 401
        assert len(token_reviews(server.emulator, before)) == 1
        time.sleep(1.2)
        assert get(url, "/api/v1/statistics", headers={"Authorization": "Bearer wrong-1"}).status_code == 401
        assert len(token_reviews(server.emulator, before)) == 2  # asked again once the answer expired

        # A token revoked at the API server stops working once its cached acceptance expires.
        USERS["short-lived-token"] = ("alice", ["readers"])
        try:
            short = {"Authorization": "Bearer short-lived-token"}
            assert get(url, "/api/v1/statistics", headers=short).status_code == 503
        finally:
            del USERS["short-lived-token"]
        time.sleep(1.2)
        assert get(url, "/api/v1/statistics", headers=short).status_code == 401


def test_token_reviews_name_the_operators_audience(k8s: tuple[EmulatorServer, KubeClient]) -> None:
    server, client = k8s
    minted_for_kubedrift = {"Authorization": "Bearer kubedrift-audience-token"}
    app = create_app()
    register_api(app, store=None, authorizer=KubeAuthorizer(client, audiences=["kubedrift"]))
    with AppThread(app) as url:
        before = len(server.emulator.reviews)
        assert get(url, "/api/v1/statistics", headers=minted_for_kubedrift).status_code == 503  # past auth
        assert get(url, "/api/v1/statistics", headers=READER).status_code == 401  # the API server's audience
        assert {tuple(r["spec"]["audiences"]) for r in token_reviews(server.emulator, before)} == {("kubedrift",)}
    default = create_app()
    register_api(default, store=None, authorizer=KubeAuthorizer(client))
    with AppThread(default) as url:
        assert get(url, "/api/v1/statistics", headers=minted_for_kubedrift).status_code == 401
        assert get(url, "/api/v1/statistics", headers=READER).status_code == 503


def test_readyz_names_the_degraded_dependency_without_its_error_text() -> None:
    readiness = Readiness()
    readiness.mark_ready()
    port = free_port()
    dead = DriftStore(f"mongodb://127.0.0.1:{port}/kubedrift", timeout_ms=200, initial_backoff=0.05,
                      on_health=store_health_hook(readiness.degrade, readiness.recover))
    dead.start()
    app = create_app(readiness)
    try:
        with AppThread(app) as url:
            assert requests.get(url + "/readyz", timeout=10).json() == {"status": "ok"}
            dead.record_scan(Scans().scan(drift("Deployment", "shop", "web"), at=T0))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and "degraded" not in requests.get(url + "/readyz", timeout=10).text:
                time.sleep(0.1)
            answer = requests.get(url + "/readyz", timeout=10)
            assert answer.status_code == 200  # degraded still serves
            body = answer.json()
            assert body["status"] == "degraded" and body["degraded"] == ["mongodb"]
            assert body["reasons"]["mongodb"] == "MongoDB does not answer; drift history writes are queued and retried"
            assert str(port) not in answer.text and "Error" not in answer.text
    finally:
        dead.close(flush_timeout=0)


async def test_readyz_follows_the_kubernetes_api_server(k8s: tuple[EmulatorServer, KubeClient],
                                                        tmp_path: Path) -> None:
    server, client = k8s
    kubeconfig = server.write_kubeconfig(tmp_path / "config")
    dead_port = free_port()
    dead_config = tmp_path / "dead-config"
    dead_config.write_text(kubeconfig.read_text().replace(server.url, f"http://127.0.0.1:{dead_port}"))
    dead = KubeClient.from_environment(str(dead_config), timeout=2)
    readiness = Readiness()
    readiness.mark_ready()
    await _check_kubernetes(client, readiness)
    assert readiness.snapshot() == {"status": "ok"}
    await _check_kubernetes(dead, readiness)
    body = readiness.snapshot()
    assert body["degraded"] == ["kubernetes"] and str(dead_port) not in str(body)
    await _check_kubernetes(client, readiness)
    assert readiness.snapshot() == {"status": "ok"}
