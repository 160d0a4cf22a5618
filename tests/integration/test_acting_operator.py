"""Acting on drift with the operator as a real process (API emulator, git over HTTP, a receiver on 127.0.0.1):
reports carry the fix, notifications go out once per transition in both shapes, Apply puts the image back
and creates the missing object one scan after it was reported, the report resolves as `remediated`, and a
failing receiver shows in the policy status and the metrics."""

from __future__ import annotations

import base64
import copy
import os
import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from tests.integration.test_operator import (
    DEPLOY_GIT,
    DEPLOY_LIVE,
    DEPLOYMENT,
    GROUP,
    REPO,
    SERVICE_GIT,
    SERVICE_LIVE,
    VERSION,
    Harness,
    _in_namespace,
    _yaml,
    wait_for,
)
from tests.support.corpus import load_one
from tests.support.emulator import EmulatorServer
from tests.support.git_http import serve_git_http
from tests.support.operator_process import running_operator
from tests.support.ports import free_port
from tests.support.receiver import Receiver, serve_receiver

pytestmark = pytest.mark.integration

NS = "platform"  # an admin namespace: the policy acts with the operator's identity (deploy/remediation)
GIT_IMAGE = "nginx:1.23.1"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Harness, Receiver]]:
    tmp = tmp_path_factory.mktemp("acting")
    cluster = EmulatorServer().start()
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        cluster.register_crd_file(crd)
    cluster.install_peering(REPO)
    kubeconfig = cluster.write_kubeconfig(tmp / "kubeconfig")
    port = free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBEDRIFT_HTTP_PORT": str(port),
           "KUBEDRIFT_GIT_CACHE": str(tmp / "git-cache"), "PYTHONUNBUFFERED": "1",
           "KUBEDRIFT_ADMIN_NAMESPACES": NS, "KUBEDRIFT_ALLOW_INSECURE_HTTP": "1"}
    args = ["--log-format", "json", "--git-timeout", "20s", "--min-interval", "1s",
            "--notification-attempts", "2", "--notification-backoff", "100ms"]
    try:
        with serve_receiver() as receiver, \
                serve_git_http(tmp / "git", username=None, password=None) as git_server, \
                running_operator(args, env, tmp / "operator.log", port):
            yield Harness(cluster, git_server, kubeconfig, tmp / "operator.log", port), receiver
    finally:
        cluster.stop()


def _secret(name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def _metric(harness: Harness, name: str, labels: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{harness.http_port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def _report(harness: Harness, kind: str) -> dict[str, Any]:
    return next(r for r in harness.reports(NS) if r["spec"]["resource"]["kind"] == kind)


def test_reports_notifications_and_remediation_end_to_end(setup: tuple[Harness, Receiver]) -> None:
    harness, receiver = setup
    cluster = harness.cluster
    cluster.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    cluster.seed(_in_namespace(load_one(DEPLOY_LIVE), NS))
    cluster.seed(_in_namespace(load_one(SERVICE_LIVE), NS))
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web-config", "namespace": NS},
              "data": {"mode": "production"}}
    harness.git.create_repo(NS, {
        "apps/deployment.yaml": _yaml(_in_namespace(load_one(DEPLOY_GIT), NS)),
        "apps/service.yaml": _yaml(_in_namespace(load_one(SERVICE_GIT), NS)),
        "apps/config.yaml": _yaml(config),
    })
    optin = {"kubedrift.dev/notification": "true"}
    harness.core.create_namespaced_secret(NS, _secret("hook", {"url": receiver.url("/hook")}, optin))
    harness.core.create_namespaced_secret(NS, _secret("slack", {"url": receiver.url("/slack")}, optin))
    harness.core.create_namespaced_secret(NS, _secret("unlabelled", {"url": receiver.url("/never")}))
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy", "metadata": {"name": "app"}, "spec": {
        "source": {"repoURL": harness.git.url(NS), "revision": "main", "paths": ["apps"]},  # public repo
        "interval": "1h",
        "notifications": [{"type": "webhook", "secretRef": {"name": "hook"}},
                          {"type": "slack", "secretRef": {"name": "slack"}, "minSeverity": "high"},
                          {"type": "webhook", "secretRef": {"name": "unlabelled"}}],
        "remediation": {"mode": "Apply", "maxPerScan": 5},
    }}
    harness.custom.create_namespaced_custom_object(GROUP, VERSION, NS, "driftpolicies", body)

    # Scan 1: the ConfigMap is missing. Reported with its fix, announced, not touched yet.
    wait_for(lambda: harness.policy(NS).get("status", {}).get("state") == "Drifted", "the first scan")
    report = _report(harness, "ConfigMap")
    fix = report["spec"]["fix"]
    assert fix["action"] == "create" and fix["fieldManager"] == "kubedrift"
    assert fix["apply"]["data"] == {"mode": "production"}
    assert fix["command"].endswith("| kubectl apply --server-side --field-manager=kubedrift --force-conflicts -f -")
    assert cluster.get("v1", "ConfigMap", NS, "web-config") is None  # never acted on before it was reported
    first = receiver.wait_for(2)
    assert sorted(r.path for r in first) == ["/hook", "/slack"]
    hook = next(r.body for r in first if r.path == "/hook")
    assert (hook["event"], hook["resourceId"], hook["state"]) == ("detected", f"ConfigMap:{NS}:web-config", "missing")
    assert "production" not in str([r.body for r in first])  # paths, never values
    failing = wait_for(lambda: next((n for n in harness.policy(NS)["status"].get("notifications", [])
                                     if n["index"] == 2 and n.get("failing")), None), "the unlabelled target failing")
    assert "not labelled kubedrift.dev/notification" in failing["lastError"]
    assert "/never" not in failing["lastError"]

    # Scan 2: reported before, so Apply creates it; the report resolves as remediated, once.
    harness.request_scan(NS)
    created = cluster.get("v1", "ConfigMap", NS, "web-config")
    assert created is not None and created["data"] == {"mode": "production"}
    report = _report(harness, "ConfigMap")
    assert report["status"]["state"] == "Resolved" and report["status"]["resolution"] == "remediated"
    assert report["status"]["remediation"]["result"] == "Succeeded"
    resolved = receiver.wait_for(4)[2:]  # Missing is high: the Slack target (minSeverity high) gets it too
    assert sorted((r.path, r.body.get("event"), r.body.get("resolution")) for r in resolved) == [
        ("/hook", "resolved", "remediated"), ("/slack", None, None)]
    assert "put back to Git by kubedrift" in next(r.body["text"] for r in resolved if r.path == "/slack")
    assert harness.events(NS, "Remediated")

    # A hand edit: detected by the watch, without a scan (both shapes: VersionChange is high), then put back
    # by the next scan.
    harness.patch_image(NS, "nginx:6.6.6-hotfix")
    detected = receiver.wait_for(6)[4:]
    assert sorted(r.path for r in detected) == ["/hook", "/slack"]
    slack = next(r.body for r in detected if r.path == "/slack")
    assert slack["blocks"][0]["type"] == "header" and "Deployment platform/nginx-deployment" in slack["text"]
    deploy_fix = _report(harness, "Deployment")["spec"]["fix"]
    assert deploy_fix["apply"]["spec"]["template"]["spec"]["containers"][0]["image"] == GIT_IMAGE
    harness.request_scan(NS)
    live = cluster.get("apps/v1", "Deployment", NS, DEPLOYMENT)
    assert live is not None and live["spec"]["template"]["spec"]["containers"][0]["image"] == GIT_IMAGE
    assert _report(harness, "Deployment")["status"]["resolution"] == "remediated"
    receiver.wait_for(8)  # resolved, to both (the drift was high)

    # Nothing changes: no message (never one per scan).
    harness.request_scan(NS)
    harness.request_scan(NS)
    assert len(receiver.received) == 8
    assert _metric(harness, "kubedrift_notifications_total", 'result="delivered"') == 8
    assert _metric(harness, "kubedrift_notifications_total", 'result="failed"') >= 1
    assert _metric(harness, "kubedrift_remediations_total", 'mode="Apply",result="Succeeded"') == 2


def test_failing_receiver_is_visible_in_the_status(setup: tuple[Harness, Receiver]) -> None:
    harness, receiver = setup
    before = len(receiver.received)
    receiver.answers = [500] * 10
    spec = copy.deepcopy(harness.policy(NS)["spec"])
    spec["remediation"] = {"mode": "DryRun"}
    spec["notifications"] = spec["notifications"][:1]
    harness.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "driftpolicies", "app", {"spec": spec})
    harness.patch_image(NS, "nginx:7.7.7")
    harness.request_scan(NS)
    state = wait_for(lambda: next((n for n in harness.policy(NS)["status"].get("notifications", [])
                                   if n.get("failing")), None), "the webhook failing")
    assert state["lastError"] == "notifications[0] (webhook): HTTP 500 (gave up after 2 attempts)"
    assert len(receiver.wait_for(before + 2)) == before + 2
    report = _report(harness, "Deployment")
    assert report["status"]["state"] == "Active"
    assert report["status"]["remediation"]["mode"] == "DryRun"
    assert report["status"]["remediation"]["message"].startswith("server-side dry run")
    live = harness.cluster.get("apps/v1", "Deployment", NS, DEPLOYMENT)
    assert live is not None and live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:7.7.7"
    receiver.answers = []
