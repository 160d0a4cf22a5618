"""The operator end to end: `kubedrift run` as a real process against the API emulator over HTTP,
DriftPolicies pointing at real git repos served over HTTP with basic auth, live objects seeded
from the captured corpus. Every test uses its own namespace and policy; one operator serves all.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
import os
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest
import yaml
from tests.support.corpus import load_one
from tests.support.emulator import EmulatorServer
from tests.support.git_http import GitHttpServer, serve_git_http
from tests.support.operator_process import running_operator
from tests.support.operator_process import wait_for as support_wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kubedrift.dev", "v1alpha1"
GIT_USER, GIT_TOKEN = "drift-bot", "tok-9f8e7d6c5b4a-never-shown"
DEPLOY_LIVE = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-live.yaml"
DEPLOY_GIT = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-config.yaml"
SERVICE_LIVE = "argoproj__gitops-engine__pkg__diff__testdata__ssd-service-live.yaml"
SERVICE_GIT = "argoproj__gitops-engine__pkg__diff__testdata__ssd-service-config.yaml"
DEPLOYMENT = "nginx-deployment"
T = TypeVar("T")
_requests = itertools.count(1)


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 45.0) -> T:
    return support_wait_for(check, what, timeout, retry_on=(kubernetes.client.ApiException,))


def _in_namespace(body: dict[str, Any], namespace: str) -> dict[str, Any]:
    body = copy.deepcopy(body)
    body["metadata"]["namespace"] = namespace
    return body


def _yaml(body: dict[str, Any]) -> str:
    return yaml.safe_dump(body, sort_keys=False)


class Harness:
    def __init__(self, cluster: EmulatorServer, git_server: GitHttpServer, kubeconfig: Path, log: Path,
                 http_port: int) -> None:
        self.cluster = cluster
        self.git = git_server
        self.kubeconfig = kubeconfig
        self.log = log
        self.http_port = http_port
        api = kubernetes.config.new_client_from_config(str(kubeconfig))
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)

    def kubectl(self, *args: str) -> str:
        done = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"kubectl {' '.join(args)} failed: {done.stderr}"
        return done.stdout

    def namespace_with_app(self, namespace: str, extra_files: dict[str, str] | None = None) -> str:
        """Namespace + live Deployment/Service (corpus) + a git repo declaring them; returns the commit."""
        self.cluster.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        self.cluster.seed(_in_namespace(load_one(DEPLOY_LIVE), namespace))
        self.cluster.seed(_in_namespace(load_one(SERVICE_LIVE), namespace))
        self.core.create_namespaced_secret(namespace, {
            "metadata": {"name": "git-creds", "labels": {"kubedrift.dev/git-credentials": "true"}},
            "data": {"username": base64.b64encode(GIT_USER.encode()).decode(),
                     "password": base64.b64encode(GIT_TOKEN.encode()).decode()},
        })
        files = {
            "apps/deployment.yaml": _yaml(_in_namespace(load_one(DEPLOY_GIT), namespace)),
            "apps/service.yaml": _yaml(_in_namespace(load_one(SERVICE_GIT), namespace)),
            **(extra_files or {}),
        }
        return self.git.create_repo(namespace, files)

    def create_policy(self, namespace: str, name: str = "app", *, interval: str = "1h",
                      repo_url: str | None = None, secret: str | None = "git-creds") -> dict[str, Any]:
        source: dict[str, Any] = {"repoURL": repo_url or self.git.url(namespace), "revision": "main",
                                  "paths": ["apps"]}
        if secret:
            source["secretRef"] = {"name": secret}
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy", "metadata": {"name": name},
                "spec": {"source": source, "interval": interval}}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "driftpolicies", body)  # type: ignore[no-any-return]

    def policy(self, namespace: str, name: str = "app") -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "driftpolicies", name)  # type: ignore[no-any-return]

    def request_scan(self, namespace: str, name: str = "app") -> str:
        """Annotate the policy, then wait until a scan has handled that very request."""
        value = f"request-{next(_requests)}"
        self.kubectl("-n", namespace, "annotate", "--overwrite", f"driftpolicy/{name}",
                     f"kubedrift.dev/scan-requested-at={value}")
        wait_for(lambda: self.policy(namespace, name).get("status", {}).get("lastHandledScanRequest") == value,
                 f"a scan of {namespace}/{name} handling {value}")
        return value

    def reports(self, namespace: str) -> list[dict[str, Any]]:
        body = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "driftreports")
        return list(body["items"])

    def events(self, namespace: str, reason: str) -> list[dict[str, Any]]:
        items = self.core.list_namespaced_event(namespace).items
        return [e.to_dict() for e in items if e.reason == reason]

    def patch_image(self, namespace: str, image: str) -> None:
        patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]
        self.kubectl("-n", namespace, "patch", "deployment", DEPLOYMENT, "--type=json", "-p", json.dumps(patch))


def _condition(policy: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in policy["status"]["conditions"] if c["type"] == type_)


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("operator")
    cluster = EmulatorServer().start()
    cluster.install_crds(REPO)
    kubeconfig = cluster.write_kubeconfig(tmp / "kubeconfig")
    log = tmp / "operator.log"
    port = free_port()
    args = ["--log-format", "json", "--report-retention", "1s", "--git-timeout", "20s", "--min-interval", "1s"]
    try:
        with serve_git_http(tmp / "git", username=GIT_USER, password=GIT_TOKEN, tls=True) as git_server:
            # Repos are served over https (credentials never go over plain http); the dead-host test uses http.
            env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBEDRIFT_HTTP_PORT": str(port),
                   "KUBEDRIFT_GIT_CACHE": str(tmp / "git-cache"), "PYTHONUNBUFFERED": "1",
                   "GIT_SSL_CAINFO": str(git_server.ca_file), "KUBEDRIFT_ALLOW_INSECURE_HTTP": "1"}
            with running_operator(args, env, log, port):
                yield Harness(cluster, git_server, kubeconfig, log, port)
    finally:
        cluster.stop()


def test_health_endpoints_answer(harness: Harness) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{harness.http_port}/healthz", timeout=5) as answer:
        assert answer.status == 200
        assert json.load(answer) == {"status": "ok"}


def test_drift_report_lifecycle_driven_by_trigger_annotation(harness: Harness) -> None:
    ns = "shop"
    sha = harness.namespace_with_app(ns)
    created = harness.create_policy(ns, interval="1h")  # only triggers scan in this test

    policy = wait_for(lambda: (p := harness.policy(ns)).get("status", {}).get("state") and p, "the first scan")
    status = policy["status"]
    assert status["state"] == "Clean", status
    assert status["revision"] == sha
    assert status["resources"] == 2 and status["drifted"] == 0
    assert status["observedGeneration"] == policy["metadata"]["generation"]
    assert _condition(policy, "Ready")["status"] == "True"
    assert _condition(policy, "Stalled")["status"] == "False"
    assert _condition(policy, "Drifted")["status"] == "False"
    assert harness.reports(ns) == []
    assert GIT_USER in harness.git.authenticated  # the token from secretRef reached git

    # A hand edit, then the trigger annotation: the scan happens now, not in an hour.
    harness.patch_image(ns, "nginx:1.25.3")
    harness.request_scan(ns)
    reports = harness.reports(ns)
    assert len(reports) == 1
    report = reports[0]
    spec = report["spec"]
    assert spec["resourceId"] == f"Deployment:{ns}:{DEPLOYMENT}"
    assert spec["resource"] == {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": DEPLOYMENT}
    assert spec["policy"] == "app" and spec["revision"] == sha
    assert spec["severity"] == "high" and spec["categories"] == ["VersionChange"]
    # (changedBy/changedAt come from managedFields, which the emulator does not maintain)
    essentials = [{k: c[k] for k in ("path", "desired", "live", "category", "severity")} for c in spec["changes"]]
    assert essentials == [{"path": "spec.template.spec.containers[name=nginx].image",
                           "desired": "nginx:1.23.1", "live": "nginx:1.25.3",
                           "category": "VersionChange", "severity": "high"}]
    assert report["status"]["state"] == "Active"
    assert report["metadata"]["labels"]["kubedrift.dev/policy"] == "app"
    assert report["metadata"]["labels"]["kubedrift.dev/kind"] == "Deployment"
    assert report["metadata"]["labels"]["kubedrift.dev/namespace"] == ns
    assert report["metadata"]["labels"]["kubedrift.dev/name"] == DEPLOYMENT
    owner = report["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("DriftPolicy", "app", created["metadata"]["uid"])

    status = harness.policy(ns)["status"]
    assert status["state"] == "Drifted" and status["drifted"] == 1
    assert status["bySeverity"] == {"low": 0, "medium": 0, "high": 1, "critical": 0}
    assert status["highestSeverity"] == "high"
    detected = harness.events(ns, "DriftDetected")
    assert len(detected) == 1
    assert DEPLOYMENT in detected[0]["message"] and "\n" not in detected[0]["message"]
    assert detected[0]["involved_object"]["name"] == "app"

    # kubectl shows it with the printer columns (the object's kind, policy and name with -o wide).
    listing = harness.kubectl("get", "driftreports", "-A")
    assert report["metadata"]["name"] in listing
    assert "VersionChange" not in listing and "high" in listing
    header = listing.splitlines()[0]
    assert "SEVERITY" in header and "SCORE" in header and "STATE" in header
    assert "Deployment" in harness.kubectl("get", "driftreports", "-A", "-o", "wide")

    # The same drift scanned again: the report is not rewritten.
    version = report["metadata"]["resourceVersion"]
    harness.request_scan(ns)
    assert harness.reports(ns)[0]["metadata"]["resourceVersion"] == version

    # The live object fixed: the watch sees it and the report resolves without waiting for a scan (the
    # policy's interval is 1h), an event says so.
    harness.patch_image(ns, "nginx:1.23.1")
    resolved = wait_for(lambda: next((r for r in harness.reports(ns)
                                      if (r.get("status") or {}).get("state") == "Resolved"), None),
                        "the report resolved by the live change")
    assert resolved["status"]["resolvedAt"]
    wait_for(lambda: harness.policy(ns)["status"]["state"] == "Clean", "the policy clean again")
    assert len(harness.events(ns, "DriftResolved")) == 1

    # After the retention period (1s for this operator) a later scan removes it.
    def removed() -> bool:
        harness.request_scan(ns)
        return harness.reports(ns) == []

    wait_for(removed, "the resolved report to expire")


def test_new_commit_is_scanned_on_interval(harness: Harness) -> None:
    ns = "commits"
    first = harness.namespace_with_app(ns)
    harness.create_policy(ns, interval="1s")
    wait_for(lambda: harness.policy(ns).get("status", {}).get("revision") == first, "the first revision")
    assert harness.policy(ns)["status"]["state"] == "Clean"

    scaled = _in_namespace(load_one(DEPLOY_GIT), ns)
    scaled["spec"]["replicas"] = 5
    second = harness.git.commit(ns, {"apps/deployment.yaml": _yaml(scaled)}, "scale nginx to 5")
    wait_for(lambda: harness.policy(ns).get("status", {}).get("revision") == second, "the new commit")
    report = wait_for(lambda: harness.reports(ns), "a report for the new commit")[0]
    assert report["spec"]["revision"] == second
    change = report["spec"]["changes"][0]
    assert (change["path"], change["desired"], change["live"], change["category"]) == ("spec.replicas", 5, 2,
                                                                                    "Scaling")


def test_unreachable_repository_stalls_the_policy(harness: Harness) -> None:
    ns = "stalled"
    harness.cluster.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    dead = f"http://127.0.0.1:{free_port()}/nowhere.git"
    harness.create_policy(ns, repo_url=dead, secret=None)
    policy = wait_for(lambda: (p := harness.policy(ns)).get("status", {}).get("state") and p, "a failed scan")
    assert policy["status"]["state"] == "Error"
    stalled = _condition(policy, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "GitError"
    assert "127.0.0.1" in stalled["message"]
    assert _condition(policy, "Ready")["status"] == "False"
    failed = harness.events(ns, "ScanFailed")
    assert len(failed) == 1 and "GitError" in failed[0]["message"]


def test_wrong_token_stalls_without_showing_credentials(harness: Harness) -> None:
    ns = "badcreds"
    harness.namespace_with_app(ns)
    wrong = "wrong-token-0123456789"
    harness.core.create_namespaced_secret(ns, {"metadata": {"name": "bad", "labels": {
        "kubedrift.dev/git-credentials": "true"}}, "stringData": {
        "username": GIT_USER, "password": wrong}})
    harness.create_policy(ns, secret="bad")
    policy = wait_for(lambda: (p := harness.policy(ns)).get("status", {}).get("state") and p, "a failed scan")
    stalled = _condition(policy, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "GitError"
    assert "auth" in stalled["message"].lower()
    published = json.dumps(policy) + json.dumps(harness.events(ns, "ScanFailed"), default=str)
    assert wrong not in published and GIT_TOKEN not in published
    # The missing secret case names the field.
    harness.create_policy(ns, name="nosecret", secret="absent")
    other = wait_for(lambda: (p := harness.policy(ns, "nosecret")).get("status", {}).get("state") and p, "a scan")
    message = _condition(other, "Stalled")["message"]
    assert "spec.source.secretRef" in message and "absent" in message


def test_forbidden_kind_is_an_error_entry_and_the_rest_is_compared(harness: Harness) -> None:
    ns = "rbac"
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": ns},
                  "data": {"mode": "strict"}}
    harness.namespace_with_app(ns, {"apps/configmap.yaml": _yaml(config_map)})
    harness.cluster.forbid("", "configmaps")
    try:
        harness.patch_image(ns, "nginx:1.99")
        harness.create_policy(ns)
        policy = wait_for(lambda: (p := harness.policy(ns)).get("status", {}).get("state") and p, "the scan")
    finally:
        harness.cluster.allow("", "configmaps")
    status = policy["status"]
    assert status["resources"] == 2  # Deployment and Service compared, the ConfigMap could not be read
    assert status["state"] == "Error" and status["drifted"] == 1
    assert any("ConfigMap" in e["file"] and "403" in e["message"] for e in status["errors"]), status["errors"]
    ready = _condition(policy, "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PartialScan"
    assert _condition(policy, "Stalled")["status"] == "False"
    # Unreadable is not missing: no report claims the ConfigMap is gone.
    assert [r["spec"]["resource"]["kind"] for r in harness.reports(ns)] == ["Deployment"]


def test_secret_values_never_reach_reports_or_logs(harness: Harness) -> None:
    ns = "secrets"
    git_value, live_value = "git-side-password-4711", "live-side-password-0815"
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": ns},
              "type": "Opaque", "stringData": {"password": git_value}}
    harness.namespace_with_app(ns, {"apps/secret.yaml": _yaml(secret)})
    harness.core.create_namespaced_secret(ns, {"metadata": {"name": "db"}, "type": "Opaque",
                                               "data": {"password": base64.b64encode(live_value.encode()).decode()}})
    harness.create_policy(ns)
    report = wait_for(lambda: harness.reports(ns), "a report on the Secret")[0]
    assert report["spec"]["resourceId"] == f"Secret:{ns}:db"
    assert report["spec"]["categories"] == ["SecretChange"] and report["spec"]["severity"] == "high"
    text = json.dumps(report) + json.dumps(harness.policy(ns)) + json.dumps(
        harness.events(ns, "DriftDetected"), default=str) + harness.log.read_text()
    for value in (git_value, live_value):
        assert value not in text
        assert base64.b64encode(value.encode()).decode() not in text
    # Keyed with the installation's key, created on first start in the operator's namespace: the digest
    # can be reproduced only with that key (no offline guessing from a plain hash).
    stored = harness.core.read_namespaced_secret("kubedrift-digest-key", "kubedrift")
    key = base64.b64decode(stored.data["key"])
    assert len(key) == 32
    change = next(c for c in report["spec"]["changes"] if c["path"] == "data.password")
    assert change["live"] == "hmac:" + hmac.new(key, live_value.encode(), hashlib.sha256).hexdigest()[:12]
    assert change["desired"] == "hmac:" + hmac.new(key, git_value.encode(), hashlib.sha256).hexdigest()[:12]


def test_deleting_the_policy_removes_its_reports(harness: Harness) -> None:
    ns = "cleanup"
    harness.namespace_with_app(ns)
    harness.patch_image(ns, "nginx:2.0")
    harness.create_policy(ns)
    wait_for(lambda: harness.reports(ns), "a report")
    harness.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, "driftpolicies", "app")

    def policy_gone() -> bool:
        try:
            harness.policy(ns)
        except kubernetes.client.ApiException as exc:
            return exc.status == 404
        return False

    wait_for(policy_gone, "the policy to be deleted (finalizer released)")
    assert harness.reports(ns) == []


def test_operator_logs_are_json_lines(harness: Harness) -> None:
    lines = [line for line in harness.log.read_text().splitlines() if line.strip()]
    assert lines
    parsed = [json.loads(line) for line in lines]
    assert any("scanned shop/app" in entry.get("message", "") for entry in parsed)
