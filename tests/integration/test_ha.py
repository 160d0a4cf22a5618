"""Two replicas of `kubedrift run` with kopf peering (issue 9): only the active one scans and exports
per-policy drift series, so every series comes from exactly one process and sums over processes
count each drift once; a paused replica drops its series. Real processes against the API emulator."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.support.corpus import in_ns, load_one
from tests.support.emulator import EmulatorServer
from tests.support.git_http import GitHttpServer, serve_git_http
from tests.support.operator_process import running_operator, wait_for
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kubedrift.dev", "v1alpha1"
DEPLOY_LIVE = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-live.yaml"
DEPLOY_GIT = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-config.yaml"


def config_map(namespace: str, mode: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": namespace},
            "data": {"mode": mode}}


def series(base: str, name: str) -> list[tuple[dict[str, str], float]]:
    text = requests.get(base + "/metrics", timeout=10).text
    return [(dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples
            if s.name == name]


def drift_series(base: str) -> set[str]:
    return {s["name"] for s, _ in series(base, "kubedrift_drift_first_seen_timestamp_seconds")}


def drifted_total(base: str) -> float:
    return sum(v for _, v in series(base, "kubedrift_drifted_resources"))


@dataclass
class Cluster:
    emulator: EmulatorServer
    git: GitHttpServer
    kubeconfig: Path
    tmp: Path
    custom: Any

    def app(self, namespace: str, interval: str) -> None:
        """A drifted Deployment (image) and ConfigMap (data), and a policy comparing them."""
        self.emulator.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        live = in_ns(load_one(DEPLOY_LIVE), namespace)
        live["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:9.9.9"
        self.emulator.seed(live)
        self.emulator.seed(config_map(namespace, "lenient"))
        self.git.create_repo(namespace, {
            "apps/deployment.yaml": yaml.safe_dump(in_ns(load_one(DEPLOY_GIT), namespace)),
            "apps/configmap.yaml": yaml.safe_dump(config_map(namespace, "strict"))})
        self.emulator.seed({"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy",
                            "metadata": {"namespace": namespace, "name": "app"},
                            "spec": {"source": {"repoURL": self.git.url(namespace), "revision": "main",
                                                "paths": ["apps"]}, "interval": interval}})

    @contextlib.contextmanager
    def replica(self, name: str, *args: str) -> Iterator[tuple[str, Path]]:
        port = free_port()
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBEDRIFT_HTTP_PORT": str(port),
               "KUBEDRIFT_GIT_CACHE": str(self.tmp / f"git-cache-{name}"), "PYTHONUNBUFFERED": "1",
               "HOSTNAME": name, "KUBEDRIFT_ALLOW_INSECURE_HTTP": "1"}  # the test's git server is plain http
        log = self.tmp / f"{name}.log"
        # --min-interval 1s: the 1s interval of the --namespace test is not held to the default 30s floor
        with running_operator(["--git-timeout", "20s", "--min-interval", "1s", *args], env, log, port) as base:
            yield base, log

    def reports(self, namespace: str) -> dict[str, str]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "driftreports")["items"]
        return {r["spec"]["resource"]["name"]: r["status"]["state"] for r in items}

    def request_scan(self, namespace: str, value: str) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "driftpolicies", "app",
            {"metadata": {"annotations": {"kubedrift.dev/scan-requested-at": value}}})

    def handled(self, namespace: str, value: str) -> bool:
        policy = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "driftpolicies", "app")
        return bool(policy.get("status", {}).get("lastHandledScanRequest") == value)


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    emulator = EmulatorServer().start()
    try:
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            emulator.register_crd_file(crd)
        kubeconfig = emulator.write_kubeconfig(tmp_path / "kubeconfig")
        custom = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(str(kubeconfig)))
        with serve_git_http(tmp_path / "git", username=None, password=None) as git:
            yield Cluster(emulator, git, kubeconfig, tmp_path, custom)
    finally:
        emulator.stop()


def test_without_the_peering_crd_the_operator_refuses_to_start(cluster: Cluster) -> None:
    port = free_port()
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "KUBEDRIFT_HTTP_PORT": str(port)}
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "kubedrift", "run"], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1
    assert "peering CRD clusterkopfpeerings.kopf.dev is not installed" in done.stderr
    assert "deploy/peering.yaml" in done.stderr and "--standalone" in done.stderr


def test_after_a_leader_change_and_a_fix_no_process_exports_the_fixed_drift(cluster: Cluster) -> None:
    cluster.emulator.install_peering(REPO)  # the CRDs only, as the install ships them
    assert cluster.emulator.get("kopf.dev/v1", "ClusterKopfPeering", None, "kubedrift") is None
    cluster.app("ha", interval="1h")
    with contextlib.ExitStack() as stack:
        first, _ = stack.enter_context(cluster.replica("replica-a", "--priority", "100"))
        wait_for(lambda: drift_series(first) == {"nginx-deployment", "settings"}, "replica a's drift series")
        # The first replica created the peering object; the second one finds it there.
        assert cluster.emulator.get("kopf.dev/v1", "ClusterKopfPeering", None, "kubedrift")

        # A replica with a higher priority comes: it leads, the first one pauses and drops its series.
        second, _ = stack.enter_context(cluster.replica("replica-b", "--priority", "200"))
        wait_for(lambda: not drift_series(first), "the paused replica to drop its drift series", timeout=60)
        wait_for(lambda: drift_series(second) == {"nginx-deployment", "settings"}, "the leader's drift series")
        assert drifted_total(first) + drifted_total(second) == 2
        assert not series(first, "kubedrift_policy_state")

        # The ConfigMap is fixed: the leader resolves it; no process exports a series for it any more.
        cluster.emulator.seed(config_map("ha", "strict"))
        cluster.request_scan("ha", "after-fix")
        wait_for(lambda: cluster.handled("ha", "after-fix"), "the leader's scan")
        assert cluster.reports("ha") == {"nginx-deployment": "Active", "settings": "Resolved"}
        assert drift_series(second) == {"nginx-deployment"} and not drift_series(first)
        assert drifted_total(first) + drifted_total(second) == 1


def test_namespace_mode_with_two_replicas_only_one_scans(cluster: Cluster) -> None:
    namespace = "solo"
    cluster.emulator.install_peering(REPO)
    cluster.app(namespace, interval="1s")
    with contextlib.ExitStack() as stack:
        _, log_a = stack.enter_context(cluster.replica("ns-a", "--namespace", namespace, "--priority", "100"))
        wait_for(lambda: "scanned solo/app" in log_a.read_text(), "replica a's scans")
        # Its peering object is the namespaced one, made in the namespace it watches.
        assert cluster.emulator.get("kopf.dev/v1", "KopfPeering", namespace, "kubedrift")
        assert cluster.emulator.get("kopf.dev/v1", "ClusterKopfPeering", None, "kubedrift") is None
        _, log_b = stack.enter_context(cluster.replica("ns-b", "--namespace", namespace, "--priority", "200"))
        wait_for(lambda: "scanned solo/app" in log_b.read_text(), "replica b's scans", timeout=60)
        wait_for(lambda: "Pausing operations" in log_a.read_text(), "replica a to pause")
        time.sleep(1.5)  # a scan of a that was under way when it paused finishes
        scans_a = log_a.read_text().count("scanned solo/app")
        scans_b = log_b.read_text().count("scanned solo/app")
        time.sleep(4)  # several 1s intervals
        assert log_a.read_text().count("scanned solo/app") == scans_a  # the paused replica does not scan
        assert log_b.read_text().count("scanned solo/app") > scans_b
