"""`kubedrift scan` without --live: live objects come from the kubeconfig's cluster (the emulator)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from tests.support.corpus import load_one
from tests.support.emulator import EmulatorServer
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

GE = "argoproj__gitops-engine__pkg__diff__testdata__"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[EmulatorServer, Path]]:
    server = EmulatorServer().start()
    try:
        yield server, server.write_kubeconfig(tmp_path / "kubeconfig")
    finally:
        server.stop()


def _scan(kubeconfig: Path, manifests: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "kubedrift", "scan", "--manifests", str(manifests), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_scan_reads_live_objects_from_the_current_context(cluster: tuple[EmulatorServer, Path], tmp_path: Path) -> None:
    server, kubeconfig = cluster
    live_deploy = load_one(GE + "smd-deploy-live.yaml")
    live_deploy["spec"]["replicas"] = 7
    server.seed(live_deploy)
    live_service = server.seed(load_one(GE + "ssd-service-live.yaml"))
    git = tmp_path / "git"
    git.mkdir()
    (git / "deploy.yaml").write_text(yaml.safe_dump(load_one(GE + "smd-deploy-config.yaml")))
    service = load_one(GE + "ssd-service-config.yaml")
    service["metadata"]["namespace"] = live_service["metadata"]["namespace"]
    missing = copy.deepcopy(service)
    missing["metadata"]["name"] = "not-deployed"
    (git / "services.yaml").write_text(yaml.safe_dump_all([service, missing]))

    proc = _scan(kubeconfig, git)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["summary"]["resources"] == 3 and out["errors"] == []
    by_id = {d["id"]: d for d in out["drifts"]}
    namespace = live_deploy["metadata"]["namespace"]
    missing_id = f"Service:{service['metadata']['namespace']}:not-deployed"
    assert set(by_id) == {f"Deployment:{namespace}:nginx-deployment", missing_id}
    assert [
        (c["path"], c["desired"], c["live"]) for c in by_id[f"Deployment:{namespace}:nginx-deployment"]["changes"]
    ] == [("spec.replicas", 2, 7)]
    assert by_id[missing_id]["state"] == "missing"


def test_kind_the_user_may_not_list_is_an_error_not_missing(
    cluster: tuple[EmulatorServer, Path], tmp_path: Path
) -> None:
    server, kubeconfig = cluster
    server.seed(load_one(GE + "smd-deploy-live.yaml"))
    server.forbid("", "services")
    git = tmp_path / "git"
    git.mkdir()
    (git / "deploy.yaml").write_text(yaml.safe_dump(load_one(GE + "smd-deploy-config.yaml")))
    service = load_one(GE + "ssd-service-config.yaml")
    service["metadata"]["namespace"] = "default"
    (git / "service.yaml").write_text(yaml.safe_dump(service))
    proc = _scan(kubeconfig, git)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["drifts"] == []  # the Service is not reported Missing, the Deployment is clean
    assert len(out["errors"]) == 1 and "Service" in out["errors"][0]["file"]
    assert "forbidden" in out["errors"][0]["message"].lower() or "403" in out["errors"][0]["message"]


def test_replicas_owned_by_a_cluster_autoscaler_are_not_drift(
    cluster: tuple[EmulatorServer, Path], tmp_path: Path
) -> None:
    server, kubeconfig = cluster
    live_deploy = load_one(GE + "smd-deploy-live.yaml")
    live_deploy["spec"]["replicas"] = 7
    server.seed(live_deploy)
    git = tmp_path / "git"
    git.mkdir()
    (git / "deploy.yaml").write_text(yaml.safe_dump(load_one(GE + "smd-deploy-config.yaml")))
    assert _scan(kubeconfig, git).returncode == 2  # replicas 2 in Git, 7 live
    server.seed(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": live_deploy["metadata"]["namespace"]},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": live_deploy["metadata"]["name"],
                },
                "minReplicas": 2,
                "maxReplicas": 10,
            },
        }
    )
    proc = _scan(kubeconfig, git)  # the HPA is only in the cluster, not in Git
    assert proc.returncode == 0, proc.stdout


def _two_contexts(path: Path, server: EmulatorServer) -> tuple[Path, str]:
    """A kubeconfig whose current context is a cluster that is down; `emulator` is the live one."""
    config = yaml.safe_load(server.write_kubeconfig(path).read_text())
    down = f"https://127.0.0.1:{free_port()}"
    config["clusters"].append({"name": "down", "cluster": {"server": down}})
    config["contexts"].append({"name": "down", "context": {"cluster": "down", "user": "tester"}})
    config["current-context"] = "down"
    path.write_text(yaml.safe_dump(config))
    return path, down


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    return subprocess.run(
        [str(Path(sys.executable).with_name("kubedrift")), "scan", *args],
        capture_output=True, text=True, timeout=120, env={**env, "NO_COLOR": "1"}, check=False,
    )


def test_kubeconfig_and_context_flags_choose_the_cluster(cluster: tuple[EmulatorServer, Path], tmp_path: Path) -> None:
    server, _ = cluster
    live_deploy = load_one(GE + "smd-deploy-live.yaml")
    live_deploy["spec"]["replicas"] = 7
    server.seed(live_deploy)
    git = tmp_path / "git"
    git.mkdir()
    (git / "deploy.yaml").write_text(yaml.safe_dump(load_one(GE + "smd-deploy-config.yaml")))
    kubeconfig, down = _two_contexts(tmp_path / "config", server)

    proc = _run("--manifests", str(git), "--kubeconfig", str(kubeconfig), "--context", "emulator", "-o", "json")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert [c["path"] for c in json.loads(proc.stdout)["drifts"][0]["changes"]] == ["spec.replicas"]

    # The current context's cluster is down: one error naming the server and the cause, before any table.
    for output in ("table", "json"):
        proc = _run("--manifests", str(git), "--kubeconfig", str(kubeconfig), "-o", output)
        assert proc.returncode == 1
        assert f"cannot reach the Kubernetes API at {down}: connection refused" in proc.stderr
        assert "MaxRetryError" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
        if output == "json":
            assert json.loads(proc.stdout)["drifts"] == []
        else:
            assert proc.stdout == ""

    proc = _run("--manifests", str(git), "--kubeconfig", str(kubeconfig), "--context", "nope")
    assert proc.returncode == 1 and "nope" in proc.stderr and "no usable cluster configuration" in proc.stderr


def _write(git: Path, name: str, *docs: dict[str, object]) -> None:
    git.mkdir(exist_ok=True)
    (git / name).write_text(yaml.safe_dump_all(list(docs)))


def test_each_object_is_read_in_its_manifests_api_version(
    cluster: tuple[EmulatorServer, Path], tmp_path: Path
) -> None:
    # An HPA applied as autoscaling/v1 (k9s render testdata hpa.json, SOURCES.md L12). The emulator
    # converts nothing between versions: it is found only when listed in the manifest's own version,
    # as a real API server would answer in that version (converting).
    server, kubeconfig = cluster
    live = load_one("derailed__k9s__internal__render__testdata__hpa.json")
    server.seed(live)
    git_hpa = json.loads(live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"])
    git_hpa["metadata"]["namespace"] = live["metadata"]["namespace"]
    _write(tmp_path / "git", "hpa.yaml", git_hpa)
    proc = _scan(kubeconfig, tmp_path / "git")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    git_hpa["spec"]["maxReplicas"] = live["spec"]["maxReplicas"] + 5
    _write(tmp_path / "git", "hpa.yaml", git_hpa)
    out = json.loads(_scan(kubeconfig, tmp_path / "git").stdout)
    assert [c["path"] for d in out["drifts"] for c in d["changes"]] == ["spec.maxReplicas"]


GATEWAY_CRD: dict[str, object] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gateways.gateway.networking.k8s.io"},
    "spec": {"group": "gateway.networking.k8s.io", "scope": "Namespaced",
             "names": {"kind": "Gateway", "plural": "gateways", "singular": "gateway"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": {"type": "object", "properties": {
                     "listeners": {"type": "array", "x-kubernetes-list-type": "map",
                                   "x-kubernetes-list-map-keys": ["name"],
                                   "items": {"type": "object"}}}}}}}}]},
}
CLUSTER_POLICY_CRD: dict[str, object] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusterpolicies.kyverno.io"},
    "spec": {"group": "kyverno.io", "scope": "Cluster",
             "names": {"kind": "ClusterPolicy", "plural": "clusterpolicies", "singular": "clusterpolicy"},
             "versions": [{"name": "v1", "served": True, "storage": True,
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]},
}


def test_custom_resources_use_the_clusters_crds(cluster: tuple[EmulatorServer, Path], tmp_path: Path) -> None:
    server, kubeconfig = cluster
    for crd in (GATEWAY_CRD, CLUSTER_POLICY_CRD):
        server.run(server.emulator.register_crd, crd)
        server.seed(crd)
    http = {"name": "http", "port": 80, "protocol": "HTTP"}
    https = {"name": "https", "port": 443, "protocol": "HTTPS"}
    gateway = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
               "metadata": {"name": "public", "namespace": "edge"},
               "spec": {"gatewayClassName": "istio", "listeners": [http, https]}}
    live_gateway = copy.deepcopy(gateway)
    live_gateway["spec"]["listeners"] = [{**https, "port": 8443}, http]  # reordered by a controller, one changed
    server.seed(live_gateway)
    policy = {"apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy", "metadata": {"name": "require-labels"},
              "spec": {"validationFailureAction": "Enforce"}}
    server.seed(policy)
    _write(tmp_path / "git", "objects.yaml", gateway, policy)  # the ClusterPolicy written without namespace
    proc = _scan(kubeconfig, tmp_path / "git")
    out = json.loads(proc.stdout)
    assert out["errors"] == [] and out["summary"]["resources"] == 2, proc.stdout + proc.stderr
    # Listeners matched by name (the CRD's x-kubernetes-list-map-keys, read from the cluster), and
    # the cluster-scoped ClusterPolicy found although the CLI's built-in table does not know it.
    assert [(d["id"], [(c["path"], c["desired"], c["live"]) for c in d["changes"]]) for d in out["drifts"]] == [
        ("Gateway:edge:public", [("spec.listeners[name=https].port", 443, 8443)])
    ]
