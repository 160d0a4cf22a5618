"""`kubedrift scan` as a user runs it: a real process, files on disk, exit codes, output contract."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.objects import deployment

PLAIN_SECRET = "hunter2-very-secret-password"
B64_SECRET = base64.b64encode(PLAIN_SECRET.encode()).decode()
LIVE_PLAIN = "rotated-in-cluster-9f8e7d"
LIVE_B64 = base64.b64encode(LIVE_PLAIN.encode()).decode()


KUBEDRIFT = str(Path(sys.executable).with_name("kubedrift"))
"""The console script pip installed, run as a user runs it."""


def run_scan(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [KUBEDRIFT, "scan", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        check=False,
    )


def _dump(path: Path, *docs: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _secret(value_field: str, value: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "type": "Opaque",
        value_field: {"password": value},
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git = tmp_path / "git"
    _dump(git / "apps" / "web.yaml", deployment())
    _dump(git / "apps" / "secret.yaml", _secret("stringData", PLAIN_SECRET))
    return git


def _live_list(*items: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": list(items), "metadata": {"resourceVersion": ""}}


def _write_live(tmp_path: Path, *items: dict[str, Any]) -> Path:
    path = tmp_path / "live.json"
    path.write_text(json.dumps(_live_list(*items)))
    return path


def test_clean_scan_exits_zero(repo: Path, tmp_path: Path) -> None:
    live = _write_live(tmp_path, deployment(), _secret("data", B64_SECRET))
    proc = run_scan("--manifests", str(repo), "--live", str(live), "--output", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["summary"] == {
        "resources": 2,
        "drifted": 0,
        "missing": 0,
        "errors": 0,
        "by_severity": {"low": 0, "medium": 0, "high": 0, "critical": 0},
    }
    assert out["drifts"] == [] and out["errors"] == []


def test_drift_exits_two_with_json_contract(repo: Path, tmp_path: Path) -> None:
    scaled = deployment(replicas=5)
    scaled["metadata"]["managedFields"] = [
        {
            "manager": "kubectl-scale",
            "operation": "Update",
            "subresource": "scale",
            "time": "2026-01-02T03:04:05Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:replicas": {}}},
        }
    ]
    live = _write_live(tmp_path, scaled)
    proc = run_scan("--manifests", str(repo), "--live", str(live), "--output", "json")
    assert proc.returncode == 2, proc.stderr
    out = json.loads(proc.stdout)
    assert out["summary"]["resources"] == 2 and out["summary"]["drifted"] == 2 and out["summary"]["missing"] == 1
    assert out["summary"]["by_severity"]["high"] == 2
    by_id = {d["id"]: d for d in out["drifts"]}
    web = by_id["Deployment:shop:web"]
    assert web["resource"] == {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"}
    assert (web["state"], web["severity"], web["categories"]) == ("drifted", "high", ["Scaling"])
    assert isinstance(web["score"], int) and 0 < web["score"] <= 100
    assert web["changes"] == [
        {
            "path": "spec.replicas",
            "desired": 2,
            "live": 5,
            "category": "Scaling",
            "severity": "high",
            "changedBy": "kubectl-scale",
            "changedAt": "2026-01-02T03:04:05Z",
        }
    ]
    assert by_id["Secret:shop:db"]["state"] == "missing"


def test_yaml_output_matches_json(repo: Path, tmp_path: Path) -> None:
    live = _write_live(tmp_path, deployment(replicas=3), _secret("data", B64_SECRET))
    as_json = json.loads(run_scan("--manifests", str(repo), "--live", str(live), "-o", "json").stdout)
    as_yaml = yaml.safe_load(run_scan("--manifests", str(repo), "--live", str(live), "-o", "yaml").stdout)
    assert as_yaml == as_json and as_json["summary"]["drifted"] == 1


def test_table_shows_rows_changes_and_summary(repo: Path, tmp_path: Path) -> None:
    live = _write_live(tmp_path, deployment(replicas=3), _secret("data", B64_SECRET))
    proc = run_scan("--manifests", str(repo), "--live", str(live))
    assert proc.returncode == 2
    assert "Deployment:shop:web" in proc.stdout
    assert "spec.replicas: 2 → 3" in proc.stdout
    assert "2 resources compared, 1 drifted" in proc.stdout


def test_broken_manifest_is_an_error_and_the_rest_is_compared(repo: Path, tmp_path: Path) -> None:
    (repo / "apps" / "broken.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n  data: [\n")
    live = _write_live(tmp_path, deployment(replicas=3), _secret("data", B64_SECRET))
    proc = run_scan("--manifests", str(repo), "--live", str(live), "-o", "json")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert [e["file"] for e in out["errors"]] == ["apps/broken.yaml"]
    assert "line" in out["errors"][0]["message"]
    assert [d["id"] for d in out["drifts"]] == ["Deployment:shop:web"]


def test_namespace_flag_places_manifests_without_namespace(tmp_path: Path) -> None:
    body = deployment()
    del body["metadata"]["namespace"]
    git = _dump(tmp_path / "web.yaml", body)
    live = _write_live(tmp_path, deployment(namespace="payments", replicas=4))
    proc = run_scan("--manifests", str(git), "--live", str(live), "--namespace", "payments", "-o", "json")
    assert proc.returncode == 2
    assert [d["id"] for d in json.loads(proc.stdout)["drifts"]] == ["Deployment:payments:web"]
    default = run_scan("--manifests", str(git), "--live", str(live), "-o", "json")
    assert [d["state"] for d in json.loads(default.stdout)["drifts"]] == ["missing"]  # looked for it in default


def test_policy_file_ignore_rules_and_overrides(repo: Path, tmp_path: Path) -> None:
    live = _write_live(tmp_path, deployment(replicas=3), _secret("data", B64_SECRET))
    policy = _dump(
        tmp_path / "policy.yaml",
        {
            "apiVersion": "kubedrift.dev/v1alpha1",
            "kind": "DriftPolicy",
            "metadata": {"name": "p", "namespace": "ops"},
            "spec": {
                "ignoreDifferences": [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}]
            },
        },
    )
    proc = run_scan("--manifests", str(repo), "--live", str(live), "--policy", str(policy), "-o", "json")
    assert proc.returncode == 0, proc.stdout
    override = _dump(
        tmp_path / "override.yaml",
        {
            "apiVersion": "kubedrift.dev/v1alpha1",
            "kind": "DriftPolicy",
            "metadata": {"name": "p"},
            "spec": {"severityOverrides": [{"category": "Scaling", "severity": "critical"}]},
        },
    )
    out = json.loads(
        run_scan("--manifests", str(repo), "--live", str(live), "--policy", str(override), "-o", "json").stdout
    )
    assert out["drifts"][0]["severity"] == "critical"


def test_invalid_policy_names_the_field(repo: Path, tmp_path: Path) -> None:
    live = _write_live(tmp_path, deployment())
    policy = _dump(
        tmp_path / "policy.yaml",
        {
            "apiVersion": "kubedrift.dev/v1alpha1",
            "kind": "DriftPolicy",
            "metadata": {"name": "p"},
            "spec": {"interval": "often"},
        },
    )
    proc = run_scan("--manifests", str(repo), "--live", str(live), "--policy", str(policy), "-o", "json")
    assert proc.returncode == 1
    assert "spec.interval" in json.loads(proc.stdout)["errors"][0]["message"]


def test_unreadable_snapshot_is_an_error(repo: Path, tmp_path: Path) -> None:
    proc = run_scan("--manifests", str(repo), "--live", str(tmp_path / "nope.json"), "-o", "json")
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["errors"]


@pytest.mark.parametrize("output", ["table", "json", "yaml", "diff"])
def test_no_secret_value_in_any_output(repo: Path, tmp_path: Path, output: str) -> None:
    live_secret = _secret("data", LIVE_B64)
    live_secret["data"]["extra"] = base64.b64encode(b"only-live-value-123").decode()
    live_secret["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(_secret("stringData", PLAIN_SECRET))
    }
    # a broken Secret manifest must not leak its content through the parse error either
    (repo / "apps" / "broken-secret.yaml").write_text(
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: b\nstringData:\n  token: [{PLAIN_SECRET}\n"
    )
    live = _write_live(tmp_path, deployment(), live_secret)
    proc = run_scan("--manifests", str(repo), "--live", str(live), "--output", output)
    assert proc.returncode == 1  # drift and a broken file
    text = proc.stdout + proc.stderr
    assert ("Secret:shop:db" in text or "git/Secret/shop/db" in text) and "hmac:" in text
    for value in (
        PLAIN_SECRET,
        B64_SECRET,
        LIVE_PLAIN,
        LIVE_B64,
        "only-live-value-123",
        base64.b64encode(b"only-live-value-123").decode(),
    ):
        assert value not in text


def test_demo_example_reports_its_documented_drifts() -> None:
    root = Path(__file__).resolve().parents[2]
    proc = run_scan(
        "--manifests",
        "examples/gitops/overlays/production",
        "--live",
        "examples/live/cluster-snapshot.yaml",
        "--namespace",
        "shop",
        cwd=root,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Deployment:shop:web" in proc.stdout and "0 errors" in proc.stdout


def test_secret_manifest_and_live_equal_in_meaning(repo: Path, tmp_path: Path) -> None:
    other = copy.deepcopy(_secret("data", B64_SECRET))
    live = _write_live(tmp_path, deployment(), other)
    assert run_scan("--manifests", str(repo), "--live", str(live)).returncode == 0
