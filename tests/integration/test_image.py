"""The container image (`make image` -> dist/kubedrift-image.tar) run as its own user.

The archive is unpacked and its processes run the way a kubelet would start them (see
tests/support/container.py): read-only root filesystem, emptyDirs, the image's entrypoint and
environment. The operator is started from deploy/deployment.yaml's own container spec against
the API emulator behind TLS, configured in-cluster (service-account token and CA at the standard
path, KUBERNETES_SERVICE_HOST/PORT), so what is tested is what `kubectl apply` would run.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from tests.support.container import Container, stop
from tests.support.corpus import load_one
from tests.support.emulator import EmulatorServer
from tests.support.git_http import serve_git_http
from tests.support.installing_emulator import installing_server, kubectl
from tests.support.operator_process import wait_for
from tests.support.ports import free_port
from tests.support.tls_proxy import make_certificates, tls_proxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

REPO = Path(__file__).resolve().parents[2]
ARCHIVE = REPO / "dist" / "kubedrift-image.tar"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_TOKEN = "eyJhbGciOiJSUzI1NiJ9.in-cluster-test-token"
GROUP, VERSION = "kubedrift.dev", "v1alpha1"
DEPLOY_LIVE = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-live.yaml"
DEPLOY_GIT = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-config.yaml"


def _package_version() -> str:
    text = (REPO / "operator" / "kubedrift" / "__init__.py").read_text()
    match = re.search(r'__version__ = "([^"]+)"', text)
    assert match
    return match[1]


def _deployment() -> dict[str, Any]:
    body = yaml.safe_load((REPO / "deploy" / "deployment.yaml").read_text())
    assert body["kind"] == "Deployment"
    return body  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Container:
    if os.geteuid() != 0:
        pytest.fail("the image tests unpack and run the image with unshare/chroot, which needs root")
    # `make image` is a no-op when the archive is newer than its sources (make test builds it first).
    log = tmp_path_factory.mktemp("image-build") / "make-image.log"
    with log.open("w") as out:
        done = subprocess.run(["make", "--no-print-directory", "image"], cwd=REPO, stdout=out,
                              stderr=subprocess.STDOUT, timeout=1200, check=False)
    assert done.returncode == 0, f"make image failed:\n{log.read_text()[-4000:]}"
    return Container.from_archive(ARCHIVE, tmp_path_factory.mktemp("image") / "rootfs")


def test_image_metadata_matches_the_deployment(container: Container) -> None:
    config = container.config
    deployment = _deployment()
    pod = deployment["spec"]["template"]["spec"]
    (spec,) = pod["containers"]
    # What `make image` tags is what the Deployment runs.
    assert config.ref_name == spec["image"]
    assert spec["image"].endswith(":" + _package_version())
    # Non-root, and the same uid the pod runs as.
    assert config.user.split(":")[0] == str(pod["securityContext"]["runAsUser"]) != "0"
    assert config.entrypoint == ["/opt/kubedrift/bin/kubedrift"]
    assert "command" not in spec, "the Deployment relies on the image's entrypoint"
    labels = config.labels
    assert labels["org.opencontainers.image.version"] == _package_version()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    assert labels["org.opencontainers.image.revision"].startswith(head.stdout.strip())
    assert labels["org.opencontainers.image.source"].startswith("https://")
    assert {"/cache", "/tmp"} <= set(config.volumes)
    assert config.env["KUBEDRIFT_GIT_CACHE"].startswith("/cache/")


def test_image_holds_no_compilers_caches_or_package_lists(container: Container) -> None:
    root = container.root
    for tool in ("gcc", "cc", "g++", "make"):
        assert not (root / "usr" / "bin" / tool).exists(), f"{tool} in the image"
    assert not any((root / "var" / "lib" / "apt" / "lists").glob("*_Packages*"))
    assert not (root / "root" / ".cache" / "pip").exists()
    assert not list((root / "opt" / "kubedrift" / "bin").glob("pip*")), "pip left in the venv"


def test_version_runs_as_the_image_user(container: Container) -> None:
    done = container.run(["version"])
    assert done.returncode == 0, done.stderr
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True)
    match = re.fullmatch(r"kubedrift (\S+) \(commit (\S+)\)\n", done.stdout)
    assert match, done.stdout
    assert match[1] == _package_version()
    assert match[2].startswith(head.stdout.strip())
    whoami = container.run(command=["id", "-u"])
    assert whoami.stdout.strip() == container.config.user.split(":")[0]


def test_git_and_kustomize_are_on_the_path(container: Container) -> None:
    done = container.run(command=["sh", "-c", "git --version && kubectl version --client"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("git version ")
    assert "Kustomize Version: v5." in done.stdout


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    """Scan output without Secret digests (keyed per run) and without timing-dependent fields."""
    report = copy.deepcopy(report)
    for drift in report["drifts"]:
        for change in drift["changes"]:
            if change["category"] == "SecretChange":
                change["desired"] = change["live"] = "<digest>"
    return report


def test_scan_of_the_bundled_kustomize_example(container: Container, tmp_path: Path) -> None:
    args = ["scan", "--manifests", "/examples/gitops/overlays/production",
            "--live", "/examples/live/cluster-snapshot.yaml", "--namespace", "shop", "--output", "json"]
    inside = container.run(args, binds={"/examples": REPO / "examples"})
    assert inside.returncode == 2, inside.stderr  # drift found
    found = json.loads(inside.stdout)
    assert found["errors"] == []
    ids = {d["id"] for d in found["drifts"]}
    assert {"Deployment:shop:web", "Service:shop:web", "ConfigMap:shop:web-config", "Secret:shop:web-secrets",
            "StatefulSet:shop:db", "ServiceAccount:shop:web"} == ids
    web = next(d for d in found["drifts"] if d["id"] == "Deployment:shop:web")
    image = next(c for c in web["changes"] if c["category"] == "VersionChange")
    assert image["desired"] == "ghcr.io/example-shop/web:1.8.3"  # the overlay's `images:` rendered by kustomize

    # A policy file is checked against the DriftPolicy CRD the package ships.
    bad = tmp_path / "policy.yaml"
    bad.write_text("apiVersion: kubedrift.dev/v1alpha1\nkind: DriftPolicy\nmetadata: {name: p}\n"
                   "spec: {source: {repoURL: https://example.com/x.git}, intervall: 5m}\n")
    tmp_path.chmod(0o755)  # readable by the image's user, like a mounted ConfigMap
    bad.chmod(0o644)
    refused = container.run([*args, "--policy", "/policy/policy.yaml"],
                            binds={"/examples": REPO / "examples", "/policy": tmp_path})
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "spec.intervall: unknown field" in refused.stdout

    # The same scan on the host finds the same drifts, change for change.
    script = Path(sys.executable).parent / "kubedrift"
    host_args = [a.replace("/examples", str(REPO / "examples")) for a in args]
    host = subprocess.run([str(script), *host_args], capture_output=True, text=True, timeout=120, check=False)
    assert host.returncode == 2, host.stderr
    assert _comparable(found) == _comparable(json.loads(host.stdout))


def _pod_env(spec: dict[str, Any], pod_name: str, namespace: str) -> dict[str, str]:
    """The container's environment as the kubelet resolves it (no Secrets exist in this cluster)."""
    env: dict[str, str] = {}
    for item in spec.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        source = item["valueFrom"]
        if "secretKeyRef" in source or "configMapKeyRef" in source:
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
            assert ref.get("optional"), f"env {item['name']} needs an object the install does not create"
            continue  # optional and absent: the variable is not set
        field = source["fieldRef"]["fieldPath"]
        env[item["name"]] = {"metadata.namespace": namespace, "metadata.name": pod_name}[field]
    return env


class Pod:
    """Runs the containers of a pod template from the emulated cluster as the kubelet would."""

    def __init__(self, image: Container, template: dict[str, Any], namespace: str, cluster: EmulatorServer,
                 account: Path, workdir: Path) -> None:
        self.image = image
        self.spec = template["spec"]
        self.namespace = namespace
        self.name = "kubedrift-7d9f8c-x2x4z"
        self.account = account
        self.volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        self.config_dirs: dict[str, Path] = {}
        for name, volume in self.volumes.items():
            if "configMap" in volume:  # the kubelet writes each key as a file
                configmap = cluster.get("v1", "ConfigMap", namespace, volume["configMap"]["name"])
                assert configmap is not None, f"volume {name}: ConfigMap {volume['configMap']['name']} missing"
                directory = workdir / f"configmap-{name}"
                directory.mkdir()
                for key, value in configmap["data"].items():
                    (directory / key).write_text(value)
                self.config_dirs[name] = directory

    def options(self, container: dict[str, Any], extra_env: dict[str, str]) -> dict[str, Any]:
        security = {**self.spec.get("securityContext", {}), **container.get("securityContext", {})}
        assert security["readOnlyRootFilesystem"] is True and security["runAsNonRoot"] is True
        assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
        tmpfs, binds = [], {SA_DIR: self.account}
        for mount in container.get("volumeMounts", []):
            volume = self.volumes[mount["name"]]
            if "emptyDir" in volume:
                tmpfs.append(mount["mountPath"])
            else:
                binds[mount["mountPath"]] = self.config_dirs[mount["name"]]
        user = security["runAsUser"]
        return {"command": container.get("command"), "env": {**_pod_env(container, self.name, self.namespace),
                                                               **extra_env, "HOSTNAME": self.name},
                "user": f"{user}:{security.get('runAsGroup', user)}", "tmpfs": tmpfs, "binds": binds}


@pytest.fixture
def cluster() -> Iterator[EmulatorServer]:
    server = installing_server()
    try:
        yield server
    finally:
        server.stop()


def test_install_then_operator_from_the_image(container: Container, cluster: EmulatorServer,
                                              tmp_path: Path) -> None:
    """README "Run it on a cluster": kubectl apply -f dist/install.yaml, then the pod as the kubelet runs it."""
    done = subprocess.run(["make", "--no-print-directory", "release-manifests"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
    applied = kubectl(kubeconfig, "apply", "-f", str(REPO / "dist" / "install.yaml"))
    assert applied.returncode == 0, applied.stderr
    deployment = cluster.get("apps/v1", "Deployment", "kubedrift", "kubedrift")
    assert deployment is not None
    namespace = deployment["metadata"]["namespace"]

    # Something to compare: a live Deployment and a Git repo whose version of it moved on.
    cluster.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})
    live = load_one(DEPLOY_LIVE)
    live["metadata"]["namespace"] = "shop"
    cluster.seed(live)
    desired = load_one(DEPLOY_GIT)
    desired["metadata"]["namespace"] = "shop"
    desired["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27.0"

    # The service-account volume a pod gets, and HTTPS in front of the API.
    certs = make_certificates(tmp_path / "pki")
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(SA_TOKEN)
    (account / "ca.crt").write_bytes(certs.ca.read_bytes())
    (account / "namespace").write_text(namespace)
    pod = Pod(container, deployment["spec"]["template"], namespace, cluster, account, tmp_path)
    (operator,) = pod.spec["containers"]

    # The probes and the server must agree on the port; it is remapped to a free one on this shared host.
    (port_spec,) = [p for p in operator["ports"] if p["name"] == operator["readinessProbe"]["httpGet"]["port"]]
    assert _pod_env(operator, pod.name, namespace)["KUBEDRIFT_HTTP_PORT"] == str(port_spec["containerPort"])
    http_port = free_port()
    log_path = tmp_path / "operator.log"
    with serve_git_http(tmp_path / "git", username=None, password=None) as git_server, \
            tls_proxy(int(cluster.url.rsplit(":", 1)[1]), certs) as proxy, log_path.open("wb") as log:
        sha = git_server.create_repo("shop", {"apps/deployment.yaml": yaml.safe_dump(desired)})
        in_cluster = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(proxy.port)}

        # No init container: the operator creates its peering object itself.
        assert "initContainers" not in pod.spec
        assert cluster.get("kopf.dev/v1", "ClusterKopfPeering", None, "kubedrift") is None

        extra = {**in_cluster, "KUBEDRIFT_HTTP_PORT": str(http_port),
                 "KUBEDRIFT_ALLOW_INSECURE_HTTP": "1"}  # the test's git server speaks plain HTTP
        process = container.start(operator.get("args"), log=log, **pod.options(operator, extra))
        try:
            probe = f"http://127.0.0.1:{http_port}{operator['readinessProbe']['httpGet']['path']}"

            def ready() -> bool:
                assert process.poll() is None, f"the operator exited: {log_path.read_text()[-3000:]}"
                try:
                    with urllib.request.urlopen(probe, timeout=2) as answer:
                        return bool(answer.status == 200)
                except OSError:
                    return False

            wait_for(ready, "/readyz of the operator in the container", timeout=90)
            client = kubernetes.config.new_client_from_config(str(kubeconfig))
            custom = kubernetes.client.CustomObjectsApi(client)
            custom.create_namespaced_custom_object(GROUP, VERSION, "shop", "driftpolicies", {
                "apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy", "metadata": {"name": "shop"},
                "spec": {"source": {"repoURL": git_server.url("shop"), "revision": "main", "paths": ["apps"]},
                         "interval": "1h"}})

            def reports() -> list[dict[str, Any]]:
                items = custom.list_namespaced_custom_object(GROUP, VERSION, "shop", "driftreports")["items"]
                return list(items)

            (report,) = wait_for(reports, "a DriftReport from the operator in the container", timeout=90)
            change = report["spec"]["changes"][0]
            assert (change["path"], change["desired"], change["live"], change["category"]) == (
                "spec.template.spec.containers[name=nginx].image", "nginx:1.27.0", "nginx:1.23.1", "VersionChange")
            assert report["spec"]["revision"] == sha

            def policy_state() -> str | None:
                # Reports are published before the policy's status within one scan: wait for the status too.
                policy = custom.get_namespaced_custom_object(GROUP, VERSION, "shop", "driftpolicies", "shop")
                return (policy.get("status") or {}).get("state")

            assert wait_for(policy_state, "the policy's status", timeout=30) == "Drifted"
            # In-cluster configuration was used: the mounted token reached the API server through TLS.
            assert proxy.tokens == {SA_TOKEN}
            peering = cluster.get("kopf.dev/v1", "ClusterKopfPeering", None, "kubedrift")
            assert peering and peering.get("status"), "the operator did not create and join the peering"
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as answer:
                assert b"kubedrift_policy_state" in answer.read()
        finally:
            code = stop(process)
    logs = log_path.read_text()
    assert code == 0, f"the operator did not stop cleanly on SIGTERM (exit {code}):\n{logs[-3000:]}"
    lines = [line for line in logs.splitlines() if line.strip()]
    assert lines and all(line.startswith("{") for line in lines), "--log-format json gives one JSON object a line"
    assert SA_TOKEN not in logs
