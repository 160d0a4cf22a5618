"""`kubedrift scan --pushgateway` from CI against a real Pushgateway (Debian's prometheus-pushgateway).

Each test runs the CLI as a process, as a CI job does, and reads the Pushgateway's /metrics as
Prometheus scrapes it (with honor_labels: true, the pushed labels are the stored ones).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.test_alert_rules import RULES, promtool
from tests.support.objects import deployment, managed, with_managed
from tests.support.pushgateway import Pushgateway, Series, running_pushgateway

from kubedrift.publish.metric_labels import MAX_SERIES_PER_POLICY

pytestmark = pytest.mark.integration

FIRST_SEEN = "kubedrift_drift_first_seen_timestamp_seconds"
STATE = "kubedrift_policy_state"
LAST_SUCCESS = "kubedrift_last_successful_scan_timestamp_seconds"
DRIFTED = "kubedrift_drifted_resources"
SCALED_AT = "2026-01-02T03:04:05Z"
"""When `kubectl scale` changed the api Deployment (managedFields time -> changedAt)."""


def run_scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubedrift", "scan", *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
    )


def scaled_by_kubectl(body: dict[str, Any], replicas: int, at: str) -> dict[str, Any]:
    body["spec"]["replicas"] = replicas
    return with_managed(body, managed("kubectl-scale", {"f:spec": {"f:replicas": {}}}, subresource="scale", time=at))


class Stack:
    """A Git folder with two Deployments and a live snapshot the test rewrites between CI runs."""

    def __init__(self, root: Path, gateway: str) -> None:
        self.root, self.gateway = root, gateway
        self.git = root / "git"
        self.git.mkdir()
        (self.git / "apps.yaml").write_text(yaml.safe_dump_all([deployment("web"), deployment("api")]))
        self.live = root / "live.json"
        self.policy = root / "policy.yaml"
        self.policy.write_text(yaml.safe_dump({
            "apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftPolicy",
            "metadata": {"name": "shop-apps", "namespace": "ops"},
            "spec": {"interval": "24h"},
        }))

    def set_live(self, *objects: dict[str, Any]) -> None:
        self.live.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))

    def scan(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return run_scan("--manifests", str(self.git), "--live", str(self.live), "--policy", str(self.policy),
                        "--output", "json", "--pushgateway", self.gateway, *extra)


GROUP = {"job": "kubedrift", "policy": "shop-apps", "namespace": "ops"}


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Pushgateway]:
    with running_pushgateway(tmp_path) as running:
        yield running


def first_seen_by_name(gateway: Pushgateway, **group: str) -> dict[str, float]:
    return {dict(labels)["name"]: value for labels, value in gateway.series(FIRST_SEEN, **(group or GROUP)).items()}


def stamped_between(value: float, before: float, after: float) -> bool:
    """A time stamped while the scan ran (kubedrift may keep whole seconds, as DriftReports do)."""
    return math.floor(before) <= value <= after


def into_the_next_second() -> None:
    """First-seen times are whole seconds: a run that must be told apart from the last starts a second later."""
    time.sleep(1.05 - time.time() % 1)


def one(series: Series) -> float:
    assert len(series) == 1, series
    return next(iter(series.values()))


def test_two_runs_keep_each_first_seen(gateway: Pushgateway, tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway.url)
    stack.set_live(deployment("web", replicas=5), scaled_by_kubectl(deployment("api"), 7, SCALED_AT))

    before = time.time()
    first = stack.scan()
    after = time.time()
    assert first.returncode == 2, first.stderr
    assert {d["id"] for d in json.loads(first.stdout)["drifts"]} == {"Deployment:shop:web", "Deployment:shop:api"}
    seen = first_seen_by_name(gateway)
    assert stamped_between(seen["web"], before, after)  # new drift, no changedAt: stamped by this run
    assert seen["api"] == datetime.fromisoformat(SCALED_AT).timestamp()  # older changedAt wins
    labels = dict(next(iter(gateway.series(FIRST_SEEN, name="web"))))
    assert labels == {"job": "kubedrift", "instance": "", "policy": "shop-apps", "namespace": "ops",
                      "kind": "Deployment", "resource_namespace": "shop", "name": "web", "severity": "high"}
    assert one(gateway.series(STATE, **GROUP)) == 1
    first_success = one(gateway.series(LAST_SUCCESS, **GROUP))
    assert stamped_between(first_success, before, after)

    into_the_next_second()
    second = stack.scan()
    assert second.returncode == 2, second.stderr
    assert first_seen_by_name(gateway) == seen
    assert one(gateway.series(LAST_SUCCESS, **GROUP)) > first_success
    assert {dict(k)["severity"]: v for k, v in gateway.series(DRIFTED, **GROUP).items()} == {
        "low": 0, "medium": 0, "high": 2, "critical": 0}


def test_a_drift_whose_severity_changes_keeps_its_first_seen(gateway: Pushgateway, tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway.url)
    stack.set_live(deployment("web", replicas=3), deployment("api"))  # +50%: medium
    assert stack.scan().returncode == 2
    (medium,) = gateway.series(FIRST_SEEN, **GROUP, name="web").items()
    assert dict(medium[0])["severity"] == "medium"

    into_the_next_second()
    stack.set_live(deployment("web", replicas=0), deployment("api"))  # to 0: high
    assert stack.scan().returncode == 2
    (high,) = gateway.series(FIRST_SEEN, **GROUP, name="web").items()
    assert dict(high[0])["severity"] == "high"
    assert high[1] == medium[1]


def test_fixing_one_drift_removes_exactly_its_series(gateway: Pushgateway, tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway.url)
    stack.set_live(deployment("web", replicas=5), deployment("api", replicas=7))
    assert stack.scan().returncode == 2
    seen = first_seen_by_name(gateway)
    assert set(seen) == {"web", "api"}

    stack.set_live(deployment("web", replicas=5), deployment("api"))  # someone scaled api back
    assert stack.scan().returncode == 2
    assert first_seen_by_name(gateway) == {"web": seen["web"]}
    assert one(gateway.series(DRIFTED, **GROUP, severity="high")) == 1

    stack.set_live(deployment("web"), deployment("api"))
    clean = stack.scan()
    assert clean.returncode == 0, clean.stdout
    assert first_seen_by_name(gateway) == {}
    assert one(gateway.series(STATE, **GROUP)) == 0
    assert sum(gateway.series(DRIFTED, **GROUP).values()) == 0

    # Back again after it was resolved: a new drift with a new age.
    into_the_next_second()
    stack.set_live(deployment("web", replicas=5), deployment("api"))
    assert stack.scan().returncode == 2
    assert first_seen_by_name(gateway)["web"] > seen["web"]


def test_error_run_pushes_state_2_and_keeps_last_successful(gateway: Pushgateway, tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway.url)
    stack.set_live(deployment("web", replicas=5), deployment("api"))
    assert stack.scan().returncode == 2
    success = one(gateway.series(LAST_SUCCESS, **GROUP))
    seen = first_seen_by_name(gateway)

    broken = stack.git / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n")
    failed = stack.scan()
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["errors"][0]["file"] == "broken.yaml"  # the scan's own output first
    assert one(gateway.series(STATE, **GROUP)) == 2
    assert one(gateway.series(LAST_SUCCESS, **GROUP)) == success
    assert first_seen_by_name(gateway) == seen  # a failed scan resolves nothing
    assert one(gateway.series(DRIFTED, **GROUP, severity="high")) == 1
    assert one(gateway.series("kubedrift_scan_errors_total", **GROUP, reason="ManifestError")) == 1

    broken.unlink()
    assert stack.scan().returncode == 2
    assert one(gateway.series(STATE, **GROUP)) == 1
    assert one(gateway.series(LAST_SUCCESS, **GROUP)) > success
    assert first_seen_by_name(gateway) == seen


def test_an_invalid_policy_is_pushed_as_an_error_of_that_policy(gateway: Pushgateway, tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway.url)
    stack.set_live(deployment("web", replicas=5), deployment("api"))
    assert stack.scan().returncode == 2
    policy = yaml.safe_load(stack.policy.read_text())
    policy["spec"]["interval"] = "often"
    stack.policy.write_text(yaml.safe_dump(policy))
    assert stack.scan().returncode == 1
    assert one(gateway.series(STATE, **GROUP)) == 2
    assert one(gateway.series("kubedrift_scan_errors_total", **GROUP, reason="InvalidPolicy")) == 1
    assert set(first_seen_by_name(gateway)) == {"web"}


def test_groups_of_other_policies_are_left_alone(gateway: Pushgateway, tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway.url)
    stack.set_live(deployment("web", replicas=5), deployment("api", replicas=7))
    assert stack.scan().returncode == 2
    seen = first_seen_by_name(gateway)

    # The same objects scanned without --policy: group `--name`/`--namespace`, its own first-seen.
    git_only_web = tmp_path / "web.yaml"
    git_only_web.write_text(yaml.safe_dump(deployment("web")))
    into_the_next_second()
    other = run_scan("--manifests", str(git_only_web), "--live", str(stack.live), "--namespace", "shop",
                     "--name", "nightly-audit", "--pushgateway", gateway.url)
    assert other.returncode == 2, other.stderr
    audit = {"job": "kubedrift", "policy": "nightly-audit", "namespace": "shop"}
    assert set(first_seen_by_name(gateway, **audit)) == {"web"}
    assert first_seen_by_name(gateway, **audit)["web"] > seen["web"]
    assert first_seen_by_name(gateway) == seen

    defaults = run_scan("--manifests", str(git_only_web), "--live", str(stack.live),
                        "--pushgateway", gateway.url)
    assert defaults.returncode == 2  # web looked for in `default`: Missing
    assert one(gateway.series(STATE, job="kubedrift", policy="scan", namespace="default")) == 1


def test_implausible_values_in_the_gateway_are_not_trusted(gateway: Pushgateway, tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway.url)
    # Whatever wrote to the group before (another tool, a bad hand-made push): NaN, negative, future values.
    garbage = "\n".join([
        f"# TYPE {FIRST_SEEN} gauge",
        f'{FIRST_SEEN}{{kind="Deployment",resource_namespace="shop",name="web",severity="high"}} NaN',
        f'{FIRST_SEEN}{{kind="Deployment",resource_namespace="shop",name="api",severity="high"}} -5',
        f"# TYPE {LAST_SUCCESS} gauge",
        f"{LAST_SUCCESS} +Inf",
        "",
    ])
    request = urllib.request.Request(f"{gateway.url}/metrics/job/kubedrift/namespace/ops/policy/shop-apps",
                                     data=garbage.encode(), method="PUT")
    urllib.request.urlopen(request, timeout=10).close()
    stack.set_live(deployment("web", replicas=5), scaled_by_kubectl(deployment("api"), 7, SCALED_AT))
    before = time.time()
    assert stack.scan().returncode == 2
    seen = first_seen_by_name(gateway)
    assert stamped_between(seen["web"], before, time.time())
    assert seen["api"] == datetime.fromisoformat(SCALED_AT).timestamp()


def test_an_error_run_carries_at_most_the_operators_series_cap(gateway: Pushgateway, tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway.url)
    flood = [f"# TYPE {FIRST_SEEN} gauge"] + [
        f'{FIRST_SEEN}{{kind="ConfigMap",resource_namespace="shop",name="cm-{i}",severity="low"}} {1000 + i}'
        for i in range(MAX_SERIES_PER_POLICY + 100)
    ]
    request = urllib.request.Request(f"{gateway.url}/metrics/job/kubedrift/namespace/ops/policy/shop-apps",
                                     data=("\n".join(flood) + "\n").encode(), method="PUT")
    urllib.request.urlopen(request, timeout=10).close()
    (stack.git / "broken.yaml").write_text("kind: ConfigMap\n")  # half an object: an error
    stack.set_live(deployment("web"), deployment("api"))
    assert stack.scan().returncode == 1
    assert len(gateway.series(FIRST_SEEN, **GROUP)) == MAX_SERIES_PER_POLICY
    assert one(gateway.series(STATE, **GROUP)) == 2


class HostileGateway(http.server.BaseHTTPRequestHandler):
    """Answers /metrics with text that is not Prometheus' format, or with a body that never ends."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        if self.path.startswith("/garbage/"):
            self.wfile.write(b'kubedrift_policy_state{policy="hunter2" 1\n\x00\x01 not a metric\n')
            return
        chunk = b"# " + b"x" * (1024 * 1024 - 3) + b"\n"
        with contextlib.suppress(OSError):
            while True:  # until the client hangs up
                self.wfile.write(chunk)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("prefix", "message"), [
    ("garbage", "answered /metrics with something that is not Prometheus text format"),
    ("endless", "answered more than 67108864 bytes on /metrics"),
])
def test_a_hostile_gateway_is_an_error_not_a_crash(tmp_path: Path, prefix: str, message: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), HostileGateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{prefix}"
        stack = Stack(tmp_path, url)
        stack.set_live(deployment("web", replicas=5), deployment("api"))
        proc = stack.scan()
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["summary"]["drifted"] == 1
    assert f"the Pushgateway at {url} {message}" in proc.stderr
    assert "hunter2" not in proc.stderr and "Traceback" not in proc.stderr


def test_stopped_pushgateway_fails_the_run_naming_the_url(gateway: Pushgateway, tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway.url)
    stack.set_live(deployment("web", replicas=5), deployment("api"))
    gateway.stop()
    proc = stack.scan()
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["drifts"][0]["id"] == "Deployment:shop:web"  # the scan's output is printed
    assert gateway.url in proc.stderr
    assert "connection refused" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_rejected_push_fails_the_run(gateway: Pushgateway, tmp_path: Path) -> None:
    stack = Stack(tmp_path, gateway.url)
    stack.set_live(deployment("web", replicas=5), deployment("api"))
    # Another job pushed a family of the same name with another type: the Pushgateway answers 400.
    request = urllib.request.Request(f"{gateway.url}/metrics/job/other",
                                     data=f"# TYPE {STATE} counter\n{STATE} 1\n".encode(), method="PUT")
    urllib.request.urlopen(request, timeout=10).close()
    proc = stack.scan()
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["summary"]["drifted"] == 1
    assert f"cannot push metrics to the Pushgateway at {gateway.url}: HTTP 400 Bad Request" in proc.stderr

    wrong_prefix = f"{gateway.url}/not-here"
    proc = stack.scan("--pushgateway", wrong_prefix)
    assert proc.returncode == 1
    assert f"cannot read the Pushgateway at {wrong_prefix}: HTTP 404 Not Found" in proc.stderr


def test_unaddressed_alert_fires_on_pushed_series_after_72h(gateway: Pushgateway, tmp_path: Path) -> None:
    # promtool's clock starts at the epoch, so the old drift's change is dated one day after it:
    # its first-seen (from changedAt) is 86400; the other drift is first seen now and never alerts here.
    stack = Stack(tmp_path, gateway.url)
    stack.set_live(deployment("web", replicas=5), scaled_by_kubectl(deployment("api"), 7, "1970-01-02T00:00:00Z"))
    assert stack.scan().returncode == 2
    pushed = gateway.series(FIRST_SEEN, **GROUP)
    assert sorted(pushed.values())[0] == 86400

    def series_text(labels: tuple[tuple[str, str], ...]) -> str:
        # As Prometheus stores it (honor_labels: true): an empty label is no label.
        return "{" + ",".join(f'{k}="{v}"' for k, v in labels if v) + "}"

    def fired(labels: tuple[tuple[str, str], ...], value: str) -> dict[str, Any]:
        own = {k: v for k, v in labels if v and k != "severity"}
        subject = f"{own['kind']} {own['resource_namespace']}/{own['name']}"
        return {
            "exp_labels": {**own, "severity": "warning", "drift_severity": dict(labels)["severity"]},
            "exp_annotations": {
                "summary": f"{subject} has drifted from Git for {value}",
                "description": f"The live {subject} has differed from Git (high severity, policy ops/shop-apps) "
                               "for more than 72 hours. Either restore the Git state or commit the live change "
                               "to Git.",
                "runbook_url": "https://github.com/kubedrift/kubedrift/blob/main/deploy/prometheus/runbooks.md"
                               "#kubedriftdriftunaddressed",
            },
        }

    old = next(labels for labels, value in pushed.items() if value == 86400)
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1h",
        "tests": [{
            "interval": "1h",
            "input_series": [{"series": f"{FIRST_SEEN}{series_text(labels)}", "values": f"{value:.17g}x120"}
                             for labels, value in pushed.items()],
            "alert_rule_test": [
                {"eval_time": "95h", "alertname": "KubedriftDriftUnaddressed", "exp_alerts": []},
                {"eval_time": "97h", "alertname": "KubedriftDriftUnaddressed",
                 "exp_alerts": [fired(old, "3d 1h 0m 0s")]},
            ],
        }],
    }
    test_file = tmp_path / "pushed.test.yaml"
    test_file.write_text(yaml.safe_dump(tests, sort_keys=False))
    result = subprocess.run([promtool(), "test", "rules", str(test_file)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
