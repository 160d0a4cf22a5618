"""Bounded work in `kubedrift run` (a real process against the API emulator): a tiny spec.interval does not
turn into a scan loop, and scans stuck on a git host that never answers leave /healthz, /metrics, /readyz
and the API answering."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.support.corpus import in_ns, load_one
from tests.support.emulator import EmulatorServer
from tests.support.git_http import serve_git_http
from tests.support.operator_process import running_operator, wait_for
from tests.support.ports import free_port
from tests.support.reviews import READER, ReviewingEmulator

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPLOY_LIVE = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-live.yaml"
DEPLOY_GIT = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-config.yaml"


def policy(namespace: str, repo_url: str, interval: str) -> dict[str, Any]:
    return {"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftPolicy",
            "metadata": {"namespace": namespace, "name": "app"},
            "spec": {"source": {"repoURL": repo_url, "revision": "main", "paths": ["apps"]}, "interval": interval}}


def metric(base: str, name: str, **labels: str) -> float | None:
    text = requests.get(base + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[tuple[EmulatorServer, dict[str, str]]]:
    """An API emulator with the CRDs (answering token reviews) and the environment of an operator for it."""
    server = EmulatorServer()
    server.emulator = ReviewingEmulator()
    server.start()
    try:
        server.install_crds(REPO)
        env = {**os.environ, "KUBECONFIG": str(server.write_kubeconfig(tmp_path / "kubeconfig")),
               "KUBEDRIFT_GIT_CACHE": str(tmp_path / "git-cache"), "KUBEDRIFT_ALLOW_INSECURE_HTTP": "1",
               "PYTHONUNBUFFERED": "1"}
        env.pop("MONGODB_URI", None)
        yield server, env
    finally:
        server.stop()


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts connections, reads what comes and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@contextmanager
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    try:
        yield hole
    finally:
        hole.close()


def test_a_1ms_interval_is_held_to_the_minimum_interval(
        cluster: tuple[EmulatorServer, dict[str, str]], tmp_path: Path) -> None:
    server, env = cluster
    ns = "tight"
    server.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    server.seed(in_ns(load_one(DEPLOY_LIVE), ns))
    port = free_port()
    with serve_git_http(tmp_path / "git", username=None, password=None) as git:
        git.create_repo(ns, {"apps/deployment.yaml": yaml.safe_dump(in_ns(load_one(DEPLOY_GIT), ns))})
        server.seed(policy(ns, git.url(ns), "1ms"))
        # No --min-interval: the default (30s) applies.
        with running_operator([], {**env, "KUBEDRIFT_HTTP_PORT": str(port)}, tmp_path / "op.log", port) as base:
            wait_for(lambda: metric(base, "kubedrift_scan_duration_seconds_count"), "the first scan")
            time.sleep(6)  # a 1ms loop ran 88 scans in 10s
            assert metric(base, "kubedrift_scan_duration_seconds_count") == 1
            # Alerts on stale scans compare with the interval in effect, not the 1ms asked for.
            assert metric(base, "kubedrift_policy_scan_interval_seconds", namespace=ns, policy="app") == 30


def test_eight_policies_stuck_on_a_git_host_leave_health_metrics_and_api_answering(
        cluster: tuple[EmulatorServer, dict[str, str]], tmp_path: Path) -> None:
    server, env = cluster
    port = free_port()
    with black_hole() as hole:
        for i in range(8):
            ns = f"slow-{i}"
            server.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            server.seed(policy(ns, f"http://127.0.0.1:{hole.port}/repo-{i}.git", "1h"))
        # 8 workers: more scans hang at once than asyncio's default executor has threads here.
        args = ["--scan-workers", "8", "--git-timeout", "600s"]
        with running_operator(args, {**env, "KUBEDRIFT_HTTP_PORT": str(port)}, tmp_path / "op.log", port) as base:
            # 6 hanging fetches fill asyncio's default executor on a 2-core machine (min(32, cpus + 4)).
            wait_for(lambda: len(hole.accepted) >= 6, "git fetches hanging on the black hole", timeout=60)
            for _ in range(3):
                for path in ("/healthz", "/readyz", "/metrics"):
                    assert requests.get(base + path, timeout=5).status_code == 200, path
                # Past authentication (a TokenReview and a SubjectAccessReview): 503, history is off.
                api = requests.get(base + "/api/v1/statistics", headers=READER, timeout=5)
                assert api.status_code == 503 and "MONGODB_URI" in api.json()["error"]
            wait_for(lambda: len(hole.accepted) >= 8, "all 8 scans running at once", timeout=60)
            assert requests.get(base + "/metrics", timeout=5).status_code == 200
            hole.close()  # let the scans fail so the operator stops promptly
