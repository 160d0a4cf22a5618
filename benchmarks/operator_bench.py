"""Operator benchmark: `kubedrift run` against the API emulator (a process of its own) at N objects.

One admin DriftPolicy (interval 1h, so no full scan runs during the measurement) declares N objects
from a local Git repository; the emulator holds their live twins (about 5% already drifted). Then,
one change at a time, a clean Deployment's image is set by hand and set back: the time from the PATCH
to the DriftReport turning Active (change -> report), and from the revert to it turning Resolved
(fix -> Resolved), as seen by a watch on DriftReports. Then a quiet minute: API requests per minute
in steady state, the operator's RSS, and the emulator's own CPU time per phase.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "operator"))

from generate import Template, generate, resource_id, write  # noqa: E402
from kubedrift.cluster.client import JSON_PATCH, ApiError, KubeClient, resource_path  # noqa: E402

POLICY_NS = "kubedrift"
IMAGE = "/spec/template/spec/containers/0/image"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class OperatorRow:
    n: int
    changes: int
    first_scan: float
    detect: list[float] = field(default_factory=list)
    resolve: list[float] = field(default_factory=list)
    requests_per_minute: float = 0.0
    rss_mib: float = 0.0
    peak_rss_mib: float = 0.0
    emulator_cpu_sync: float = 0.0
    emulator_cpu_changes: float = 0.0
    emulator_cpu_quiet: float = 0.0
    operator_cpu_sync: float = 0.0
    operator_cpu_quiet: float = 0.0
    watches: int = 0

    @staticmethod
    def _pct(values: list[float], q: float) -> float:
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")

    def p(self, which: str, q: float) -> float:
        return self._pct(self.detect if which == "detect" else self.resolve, q)


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _rss_mib(pid: int) -> tuple[float, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def _wait(check: Any, what: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"operator benchmark: timed out waiting for {what}")


class ReportWatch:
    """Times at which each DriftReport was seen Active / Resolved (a watch of its own, in a thread)."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self.lock = threading.Condition()
        self.seen: dict[tuple[str, str], float] = {}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.stream: Any = None

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        path = resource_path("kubedrift.dev", "v1alpha1", "driftreports", POLICY_NS)
        while True:
            try:
                self.stream = self.client.stream(path, {"watch": "true", "timeoutSeconds": "3600"}, 3700.0)
                for event in self.stream:
                    body = event.get("object") or {}
                    rid = (body.get("spec") or {}).get("resourceId")
                    state = (body.get("status") or {}).get("state")
                    if rid and state:
                        with self.lock:
                            self.seen[(rid, state)] = time.monotonic()
                            self.lock.notify_all()
            except ApiError:
                time.sleep(0.2)

    def wait(self, rid: str, state: str, after: float, timeout: float = 60.0) -> float:
        with self.lock:
            ok = self.lock.wait_for(lambda: self.seen.get((rid, state), 0.0) > after, timeout)
            if not ok:
                raise SystemExit(f"operator benchmark: no {state} report for {rid} within {timeout:.0f}s")
            return self.seen[(rid, state)]


def _git_repo(manifests: Path, repo: Path) -> None:
    shutil.rmtree(repo, ignore_errors=True)
    shutil.copytree(manifests, repo / "desired")
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.invalid"}
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "desired state"]):
        subprocess.run(["git", "-C", str(repo), *argv], check=True, env=env)


def _stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as answer:
        result: dict[str, Any] = json.load(answer)
        return result


def measure_operator(n: int, templates: list[Template], out: Path, changes: int, quiet: float,
                     kubedrift: list[str]) -> OperatorRow:
    data = generate(templates, n)
    folder = out / f"operator-n{n}"
    shutil.rmtree(folder, ignore_errors=True)
    manifests, live = write(data, folder)
    _git_repo(manifests, folder / "repo")
    control = folder / "control"
    log = (folder / "operator.log").open("w")
    emulator = subprocess.Popen([sys.executable, str(HERE / "emulator_server.py"), str(live), str(control)],
                                stdout=subprocess.DEVNULL, stderr=(folder / "emulator.log").open("w"))
    operator: subprocess.Popen[bytes] | None = None
    try:
        _wait(lambda: (control / "stats-port").exists() or emulator.poll() is not None, "the emulator", 600)
        if emulator.poll() is not None:
            raise SystemExit(f"the emulator exited; see {folder / 'emulator.log'}")
        stats_port = int((control / "stats-port").read_text())
        kubeconfig = control / "kubeconfig"
        client = KubeClient.from_environment(str(kubeconfig))
        policy = {"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftPolicy",
                  "metadata": {"name": "bench", "namespace": POLICY_NS},
                  "spec": {"source": {"repoURL": f"file://{folder / 'repo'}", "revision": "main",
                                      "paths": ["desired"]}, "interval": "1h"}}
        client.request("POST", resource_path("kubedrift.dev", "v1alpha1", "driftpolicies", POLICY_NS), body=policy)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig),
               "KUBEDRIFT_GIT_CACHE": str(folder / "git-cache"), "KUBEDRIFT_ALLOW_FILE_REPOS": "1",
               "KUBEDRIFT_ADMIN_NAMESPACES": POLICY_NS}
        cpu_start = _cpu_seconds(emulator.pid)
        started = time.monotonic()
        operator = subprocess.Popen([*kubedrift, "run", "--standalone", "--http-port", str(_free_port())],
                                    env=env, stdout=log, stderr=subprocess.STDOUT)
        policy_path = resource_path("kubedrift.dev", "v1alpha1", "driftpolicies", POLICY_NS, "bench")
        _wait(lambda: (client.get(policy_path).get("status") or {}).get("lastScanTime"), "the first scan", 1200)
        row = OperatorRow(n=n, changes=changes, first_scan=time.monotonic() - started)
        cpu_synced = _cpu_seconds(emulator.pid)
        row.emulator_cpu_sync = cpu_synced - cpu_start
        row.operator_cpu_sync = _cpu_seconds(operator.pid)

        watch = ReportWatch(client)
        watch.start()
        clean = [o for o in data.live if o["kind"] == "Deployment" and resource_id(o) not in data.drifted_ids]
        for obj in clean[:changes]:
            rid = resource_id(obj)
            path = resource_path("apps", "v1", "deployments", obj["metadata"]["namespace"], obj["metadata"]["name"])
            original = obj["spec"]["template"]["spec"]["containers"][0]["image"]
            before = time.monotonic()
            client.request("PATCH", path, body=[{"op": "replace", "path": IMAGE, "value": "bench/hand-edit:1"}],
                           content_type=JSON_PATCH)
            row.detect.append(watch.wait(rid, "Active", before) - before)
            before = time.monotonic()
            client.request("PATCH", path, body=[{"op": "replace", "path": IMAGE, "value": original}],
                           content_type=JSON_PATCH)
            row.resolve.append(watch.wait(rid, "Resolved", before) - before)
        cpu_changed = _cpu_seconds(emulator.pid)
        row.emulator_cpu_changes = cpu_changed - cpu_synced

        time.sleep(2.0)  # let the last publications settle
        first = _stats(stats_port)
        operator_cpu = _cpu_seconds(operator.pid)
        time.sleep(quiet)
        last = _stats(stats_port)
        row.operator_cpu_quiet = _cpu_seconds(operator.pid) - operator_cpu
        row.requests_per_minute = (last["requests"] - first["requests"]) * 60.0 / quiet
        row.emulator_cpu_quiet = _cpu_seconds(emulator.pid) - cpu_changed
        row.watches = int(last["open_watches"]) - 1  # not the benchmark's own
        row.rss_mib, row.peak_rss_mib = _rss_mib(operator.pid)
        return row
    finally:
        for process in (operator, emulator):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
        log.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def table(rows: list[OperatorRow], quiet: float) -> str:
    lines = [
        "| N objects | first scan s | change -> report p50 / p95 s | fix -> Resolved p50 / p95 s | changes "
        f"| API requests/min (quiet {quiet:.0f}s) | open watches | operator RSS (peak) MiB "
        "| operator CPU s: first scan / quiet | emulator CPU s: sync / changes / quiet |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.n:,} | {r.first_scan:.1f} | {r.p('detect', 0.5):.2f} / {r.p('detect', 0.95):.2f} "
            f"| {r.p('resolve', 0.5):.2f} / {r.p('resolve', 0.95):.2f} | {len(r.detect)} "
            f"| {r.requests_per_minute:.1f} | {r.watches} | {r.rss_mib:.0f} ({r.peak_rss_mib:.0f}) "
            f"| {r.operator_cpu_sync:.1f} / {r.operator_cpu_quiet:.1f} "
            f"| {r.emulator_cpu_sync:.1f} / {r.emulator_cpu_changes:.1f} / {r.emulator_cpu_quiet:.1f} |"
        )
    if len(rows) >= 2:
        small, big = rows[0], rows[-1]
        lines.append("")
        lines.append(
            f"Ratios {big.n:,} / {small.n:,} objects (same run): change -> report p95 "
            f"{big.p('detect', 0.95) / small.p('detect', 0.95):.2f}x, fix -> Resolved p95 "
            f"{big.p('resolve', 0.95) / small.p('resolve', 0.95):.2f}x, RSS {big.rss_mib / small.rss_mib:.2f}x, "
            f"first scan {big.first_scan / small.first_scan:.2f}x.")
    return "\n".join(lines)
