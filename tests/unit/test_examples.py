"""The demo (examples/) end to end: `kubedrift scan` finds exactly the drifts examples/README.md documents.

The live snapshot carries every server default, quantity re-serialization, managedFields and
status a real API server returns, so any extra finding here is a false positive.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "examples" / "gitops" / "overlays" / "production"
SNAPSHOT = REPO / "examples" / "live" / "cluster-snapshot.yaml"
SECRET_FILE = REPO / "examples" / "gitops" / "base" / "secret.yaml"

SECRET_DIGEST = "hmac:"
# id -> state, {(path, category, severity, changedBy, changedAt): (desired, live)}; SECRET_DIGEST = any digest.
EXPECTED: dict[str, tuple[str, dict[tuple[str, str, str, str | None, str | None], tuple[Any, Any]]]] = {
    "Deployment:shop:web": ("drifted", {
        ("spec.replicas", "Scaling", "high", "kubectl-scale", "2026-01-20T08:03:11Z"): (3, 8),
        ("spec.template.spec.containers[name=web].image", "VersionChange", "high", "kubectl-set",
         "2026-01-19T22:41:17Z"): ("ghcr.io/example-shop/web:1.8.3", "ghcr.io/example-shop/web:1.8.4-hotfix.1"),
        ("spec.template.spec.containers[name=web].env[name=JAVA_TOOL_OPTIONS]", "ConfigurationChange", "medium",
         "kubectl-edit", "2026-01-19T22:47:52Z"): (None, {
             "name": "JAVA_TOOL_OPTIONS",
             "value": "-agentlib:jdwp=transport=dt_socket,server=y,suspend=n,address=*:5005"}),
    }),
    "Service:shop:web": ("drifted", {
        ("spec.ports[port=80,protocol=TCP].targetPort", "PortChange", "medium", "kubectl-edit",
         "2026-01-23T16:30:27Z"): ("http", 8081),
    }),
    "ConfigMap:shop:web-config": ("drifted", {
        ("data.LOG_LEVEL", "ConfigurationChange", "medium", "kubectl-edit", "2026-01-21T14:22:40Z"): ("info", "debug"),
    }),
    "Secret:shop:web-secrets": ("drifted", {
        ("data.PAYMENT_API_KEY", "SecretChange", "high", "kubectl-patch", "2026-01-22T10:05:09Z"):
            (SECRET_DIGEST, SECRET_DIGEST),
    }),
    "StatefulSet:shop:db": ("drifted", {
        ("spec.template.spec.containers[name=postgres].resources.limits.memory", "ResourceChange", "medium",
         "kubectl-edit", "2026-01-26T11:12:45Z"): ("2Gi", "3Gi"),
    }),
    "ServiceAccount:shop:web": ("missing", {}),
}


def kubedrift(*args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).parent / "kubedrift"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "kubedrift.cli"]
    # The source root on the path too, so the test also runs from a checkout that was never pip-installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "operator"),
                                                                    os.environ.get("PYTHONPATH")])),
           "COLUMNS": str(columns)}
    return subprocess.run(
        [*command, "scan", "--manifests", str(OVERLAY), "--live", str(SNAPSHOT), "--namespace", "shop", *args],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env, check=False,
    )


@pytest.fixture(scope="module")
def scan_json() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = kubedrift("--output", "json")
    assert proc.returncode == 2, proc.stderr
    return proc, json.loads(proc.stdout)


def secret_values() -> set[str]:
    """Every Secret value of the demo, in clear and in base64, from Git and from the snapshot."""
    plain = set(yaml.safe_load(SECRET_FILE.read_text())["stringData"].values())
    for item in yaml.safe_load(SNAPSHOT.read_text())["items"]:
        if item["kind"] == "Secret":
            plain |= {base64.b64decode(v).decode() for v in item["data"].values()}
    return plain | {base64.b64encode(v.encode()).decode() for v in plain}


def test_scan_reports_exactly_the_documented_drifts(scan_json: tuple[Any, dict[str, Any]]) -> None:
    _, report = scan_json
    drifts = {d["id"]: d for d in report["drifts"]}
    assert set(drifts) == set(EXPECTED)
    for rid, (state, changes) in EXPECTED.items():
        drift = drifts[rid]
        assert drift["state"] == state, rid
        if state == "missing":
            assert drift["categories"] == ["Missing"]
            assert drift["severity"] == "high"
            continue
        got = {
            (c["path"], c["category"], c["severity"], c.get("changedBy"), c.get("changedAt")): (c["desired"], c["live"])
            for c in drift["changes"]
        }
        assert set(got) == set(changes), rid
        assert len(drift["changes"]) == len(changes), rid
        assert drift["categories"] == sorted({key[1] for key in changes}), rid
        for key, (desired, live) in changes.items():
            if desired == SECRET_DIGEST:
                assert got[key][0].startswith(SECRET_DIGEST) and got[key][1].startswith(SECRET_DIGEST)
                assert got[key][0] != got[key][1]
            else:
                assert got[key] == (desired, live), key


def test_scan_summary(scan_json: tuple[Any, dict[str, Any]]) -> None:
    _, report = scan_json
    assert report["errors"] == []
    summary = report["summary"]
    assert summary["resources"] == 7  # the 7 objects the overlay renders
    assert summary["drifted"] == len(EXPECTED)
    assert summary["missing"] == 1
    assert summary["errors"] == 0
    assert summary["by_severity"] == {"low": 0, "medium": 3, "high": 3, "critical": 0}
    severities = {d["id"]: d["severity"] for d in report["drifts"]}
    assert severities["Deployment:shop:web"] == "high"
    assert severities["Secret:shop:web-secrets"] == "high"
    assert severities["StatefulSet:shop:db"] == "medium"


def test_no_secret_value_in_json_output(scan_json: tuple[subprocess.CompletedProcess[str], Any]) -> None:
    proc, _ = scan_json
    values = secret_values()
    assert len(values) == 8  # 4 distinct plain values (3 keys + the rotated key), each also in base64
    for value in values:
        assert value not in proc.stdout
        assert value not in proc.stderr


def test_table_output_for_the_demo() -> None:
    proc = kubedrift("--output", "table", columns=400)  # wide enough that no id or path wraps
    assert proc.returncode == 2, proc.stderr
    for rid, (_, changes) in EXPECTED.items():
        assert rid in proc.stdout
        for path, _, _, manager, _ in changes:
            assert path in proc.stdout
            assert f"by {manager}" in proc.stdout
    for value in secret_values():
        assert value not in proc.stdout
        assert value not in proc.stderr


def test_diff_output_for_the_demo() -> None:
    proc = kubedrift("--output", "diff")
    assert proc.returncode == 2, proc.stderr
    headers = [line for line in proc.stdout.splitlines() if line.startswith(("--- ", "+++ "))]
    expected = []
    for rid in EXPECTED:
        kind, namespace, name = rid.split(":")
        expected += [f"--- git/{kind}/{namespace}/{name}", f"+++ live/{kind}/{namespace}/{name}"]
    assert sorted(headers) == sorted(expected)
    assert "-  replicas: 3\n+  replicas: 8\n" in proc.stdout
    assert "-        image: ghcr.io/example-shop/web:1.8.3\n" in proc.stdout
    assert "+        - name: JAVA_TOOL_OPTIONS\n" in proc.stdout  # added by hand, shown on the live side
    assert "-  PAYMENT_API_KEY: hmac:" in proc.stdout and "+  PAYMENT_API_KEY: hmac:" in proc.stdout
    for value in secret_values():
        assert value not in proc.stdout
        assert value not in proc.stderr
