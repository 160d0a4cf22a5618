"""`kubedrift scan` in a CI pipeline, run as a CI author runs it: the installed console script, real
files, real pipes and terminals (a pty), exit codes 0 clean / 2 drift / 1 anything else (issue 11)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.objects import deployment

BIN = Path(sys.executable).parent
KUBEDRIFT = str(BIN / "kubedrift")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
POLICY_HEAD = {"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftPolicy", "metadata": {"name": "ci"}}


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBEDRIFT, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
        cwd=cwd,
        check=False,
    )


def run_in_terminal(
    args: list[str], columns: int, *, stdout_tty: bool = True, stdin_tty: bool = False
) -> tuple[int, str, str]:
    """Run with stderr (and stdout unless told otherwise) on a real pseudo-terminal `columns` wide."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        [KUBEDRIFT, *args],
        stdin=secondary if stdin_tty else subprocess.DEVNULL,
        stdout=secondary if stdout_tty else subprocess.PIPE,
        stderr=secondary,
        env=env,
    )
    os.close(secondary)
    chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(primary, chunks))
    reader.start()
    piped = proc.stdout.read().decode() if proc.stdout else ""
    reader.join(timeout=120)
    code = proc.wait(timeout=120)
    os.close(primary)
    return code, b"".join(chunks).decode(errors="replace"), piped


def _drain(fd: int, into: list[bytes]) -> None:
    """Everything written to a pseudo-terminal until its last writer closes it."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the process closed the terminal
            return
        if not chunk:
            return
        into.append(chunk)


def write_yaml(path: Path, *docs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def live_list(tmp_path: Path, *items: dict[str, Any], name: str = "live.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": list(items)}))
    return path


@pytest.fixture
def drifted(tmp_path: Path) -> tuple[Path, Path]:
    """Git declares 2 replicas, the cluster runs 5."""
    git = write_yaml(tmp_path / "git" / "web.yaml", deployment())
    return git, live_list(tmp_path, deployment(replicas=5))


# ----- exit codes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["scan"],  # --manifests is required
        ["scan", "--manifests", "x", "--output", "xml"],
        ["scan", "--manifests"],
        ["sacn", "--manifests", "x"],
        ["scan", "--manifests", "x", "--live", "y", "--context", "prod"],
        [],
    ],
)
def test_usage_errors_exit_1_not_2_which_means_drift(args: list[str]) -> None:
    proc = run(*args)
    assert proc.returncode == 1, proc.stderr
    assert "usage: kubedrift" in proc.stderr and "error:" in proc.stderr
    assert proc.stdout == ""


def test_clean_drift_and_error_exit_codes(drifted: tuple[Path, Path], tmp_path: Path) -> None:
    git, live = drifted
    clean = live_list(tmp_path, deployment(), name="clean.json")
    assert run("scan", "--manifests", str(git), "--live", str(clean)).returncode == 0
    assert run("scan", "--manifests", str(git), "--live", str(live)).returncode == 2
    (git.parent / "broken.yaml").write_text("kind: [\n")
    assert run("scan", "--manifests", str(git.parent), "--live", str(live)).returncode == 1


@pytest.mark.parametrize("files", [{}, {"values.yaml": "replicaCount: 3\nimage: {tag: v1}\n", "notes.txt": "hi"}])
def test_input_without_any_kubernetes_object_is_an_error(tmp_path: Path, files: dict[str, str]) -> None:
    git = tmp_path / "git"
    git.mkdir()
    for name, text in files.items():
        (git / name).write_text(text)
    live = live_list(tmp_path, deployment())
    proc = run("scan", "--manifests", str(git), "--live", str(live), "-o", "json")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["errors"] == [{"file": str(git), "message": "no Kubernetes object found"}]
    assert "no Kubernetes object found" in run("scan", "--manifests", str(git), "--live", str(live)).stdout


def test_document_with_kind_but_no_apiversion_fails_the_scan(tmp_path: Path) -> None:
    git = tmp_path / "git"
    write_yaml(git / "web.yaml", deployment(), {"kind": "Service", "metadata": {"name": "web"}, "spec": {}})
    proc = run("scan", "--manifests", str(git), "--live", str(live_list(tmp_path, deployment())), "-o", "json")
    assert proc.returncode == 1  # not 0: the Service was never compared
    [error] = json.loads(proc.stdout)["errors"]
    assert error["file"] == "web.yaml"
    assert error["message"].startswith("document 2: has kind but no apiVersion")


# ----- policy file: the CRD's schema, strictly ------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field", "problem"),
    [
        ({"ignoreDiferences": [{"kind": "Deployment", "jsonPointers": ["/spec/replicas"]}]},
         "spec.ignoreDiferences", "unknown field (did you mean ignoreDifferences?)"),
        ({"ignoreDifferences": [{"kind": "Deployment", "jsonPointer": ["/spec/replicas"]}]},
         "spec.ignoreDifferences[0].jsonPointer", "unknown field (did you mean jsonPointers?)"),
        ({"ignoreDifferences": [{"jqPathExpressions": [".spec.replicas", ".spec..x["]}]},
         "spec.ignoreDifferences[0].jqPathExpressions[1]", "invalid jq expression: syntax error"),
        ({"severityOverrides": [{"category": "Scaling", "severity": "urgent"}]},
         "spec.severityOverrides[0].severity", "must be one of low, medium, high, critical"),
        ({"target": {"namespaces": "shop"}}, "spec.target.namespaces", "must be of type array"),
        ({"interval": "often"}, "spec.interval", "does not match the pattern"),
    ],
)
def test_policy_that_does_not_validate_stops_the_scan_naming_the_field(
    drifted: tuple[Path, Path], tmp_path: Path, spec: dict[str, Any], field: str, problem: str
) -> None:
    git, live = drifted
    policy = write_yaml(tmp_path / "policy.yaml", {**POLICY_HEAD, "spec": spec})
    proc = run("scan", "--manifests", str(git), "--live", str(live), "--policy", str(policy), "-o", "json")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["drifts"] == [] and out["summary"]["resources"] == 0  # nothing compared with a broken policy
    [error] = out["errors"]
    assert error["file"] == str(policy)
    assert error["message"].startswith(f"{field}: {problem}"), error["message"]
    assert f"{field}: {problem}" in proc.stderr  # and said to the person reading the CI log
    assert "often" not in error["message"] and ".spec..x[" not in error["message"]  # never echoes the value


def test_valid_policy_with_every_field_applies(drifted: tuple[Path, Path], tmp_path: Path) -> None:
    git, live = drifted
    policy = write_yaml(
        tmp_path / "policy.yaml",
        {
            **POLICY_HEAD,
            "spec": {
                "source": {"repoURL": "https://git.example.com/shop.git", "revision": "main", "paths": ["apps"]},
                "target": {"namespaces": ["shop"], "defaultNamespace": "shop", "excludeKinds": ["Secret"]},
                "interval": "1h30m",
                "ignoreDifferences": [{"group": "apps", "kind": "Deployment", "jqPathExpressions": [".spec.replicas"]}],
                "severityOverrides": [{"category": "Scaling", "severity": "low"}],
                "handEditManagers": ["kubectl-edit"],
                "suspend": None,  # null counts as absent, as on the API server
            },
        },
    )
    proc = run("scan", "--manifests", str(git), "--live", str(live), "--policy", str(policy))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_example_policy_file_is_accepted(drifted: tuple[Path, Path]) -> None:
    git, live = drifted
    example = Path(__file__).resolve().parents[2] / "examples" / "driftpolicy.yaml"
    proc = run("scan", "--manifests", str(git), "--live", str(live), "--policy", str(example), "-o", "json")
    assert proc.returncode == 2, proc.stdout  # the policy is valid; the replicas drift remains
    assert json.loads(proc.stdout)["errors"] == []


# ----- stdin ----------------------------------------------------------------------------------------


def test_manifests_from_stdin_yaml_stream_and_json(tmp_path: Path) -> None:
    live = live_list(tmp_path, deployment(replicas=5), deployment(name="api"))
    stream = "---\n" + yaml.safe_dump_all([deployment(), deployment(name="api")]) + "---\n# trailing comment\n"
    proc = run("scan", "--manifests", "-", "--live", str(live), "-o", "json", stdin=stream)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["summary"]["resources"] == 2 and [d["id"] for d in out["drifts"]] == ["Deployment:shop:web"]

    as_json = json.dumps({"apiVersion": "v1", "kind": "List", "items": [deployment(name="api")]})
    assert run("scan", "--manifests", "-", "--live", str(live), stdin=as_json).returncode == 0


def test_stdin_is_combined_with_files_and_its_errors_name_stdin(tmp_path: Path) -> None:
    git = write_yaml(tmp_path / "git" / "api.yaml", deployment(name="api"))
    live = live_list(tmp_path, deployment(), deployment(name="api"))
    proc = run("scan", "--manifests", str(git), "--manifests", "-", "--live", str(live), "-o", "json",
               stdin=yaml.safe_dump(deployment()) + "---\nkind: ConfigMap\nmetadata: {name: x}\n")
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert out["summary"]["resources"] == 2
    assert [(e["file"], e["message"].split(" (")[0]) for e in out["errors"]] == [
        ("<stdin>", "document 2: has kind but no apiVersion")
    ]
    empty = run("scan", "--manifests", "-", "--live", str(live), stdin="")
    assert empty.returncode == 1 and "<stdin>: no Kubernetes object found" in empty.stdout


def test_stdin_on_a_terminal_is_an_error_not_a_hang(tmp_path: Path) -> None:
    live = live_list(tmp_path, deployment())
    code, screen, _ = run_in_terminal(["scan", "--manifests", "-", "--live", str(live)], 120, stdin_tty=True)
    assert code == 1 and "stdin is a terminal; pipe manifests in" in screen


# ----- --live errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["table", "diff", "json"])
def test_missing_live_snapshot_is_an_error_before_any_table(drifted: tuple[Path, Path], tmp_path: Path,
                                                            output: str) -> None:
    git, _ = drifted
    typo = tmp_path / "liev.json"
    proc = run("scan", "--manifests", str(git), "--live", str(typo), "-o", output)
    assert proc.returncode == 1
    assert f"error: {typo}: cannot read" in proc.stderr
    assert "Missing" not in proc.stdout + proc.stderr and "Deployment" not in proc.stdout + proc.stderr
    if output == "json":
        out = json.loads(proc.stdout)
        assert out["drifts"] == [] and [e["file"] for e in out["errors"]] == [str(typo)]
    else:
        assert proc.stdout == ""


# ----- output ----------------------------------------------------------------------------------------


def test_json_and_yaml_documents_are_versioned(drifted: tuple[Path, Path]) -> None:
    git, live = drifted
    as_json = json.loads(run("scan", "--manifests", str(git), "--live", str(live), "-o", "json").stdout)
    as_yaml = yaml.safe_load(run("scan", "--manifests", str(git), "--live", str(live), "-o", "yaml").stdout)
    assert list(as_json)[:2] == ["apiVersion", "kind"]
    assert (as_json["apiVersion"], as_json["kind"]) == ("kubedrift.dev/v1alpha1", "ScanResult")
    assert set(as_json) == {"apiVersion", "kind", "summary", "drifts", "errors"}
    assert as_yaml == as_json


def test_diff_output_is_a_unified_diff_per_drifted_object(tmp_path: Path) -> None:
    git = write_yaml(
        tmp_path / "git" / "all.yaml",
        deployment(),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "a"}}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "gone", "namespace": "shop"},
         "data": {"a": "1"}},
    )
    live_web = deployment(replicas=5)
    live_web["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "DEBUG", "value": "1"})
    live_web["metadata"]["managedFields"] = [{
        "manager": "kubectl-edit", "operation": "Update", "apiVersion": "apps/v1", "time": "2026-01-02T03:04:05Z",
        "fieldsType": "FieldsV1",
        "fieldsV1": {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"web"}': {
            "f:env": {'k:{"name":"DEBUG"}': {".": {}, "f:name": {}, "f:value": {}}}}}}}}},
    }]
    live_ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "b"}}}
    proc = run("scan", "--manifests", str(git), "--live", str(live_list(tmp_path, live_web, live_ns)), "-o", "diff")
    assert proc.returncode == 2, proc.stderr
    out = proc.stdout
    assert "\x1b[" not in out  # no colour without a terminal
    headers = [line for line in out.splitlines() if line.startswith(("--- ", "+++ "))]
    assert headers == [
        "--- git/ConfigMap/shop/gone", "+++ live/ConfigMap/shop/gone",
        "--- git/Deployment/shop/web", "+++ live/Deployment/shop/web",
        "--- git/Namespace//shop", "+++ live/Namespace//shop",
    ]
    web = out[out.index("--- git/Deployment"):out.index("--- git/Namespace")]
    assert "\n-  replicas: 2\n+  replicas: 5\n" in web
    assert "\n+        - name: DEBUG\n+          value: '1'\n" in web  # added by hand: only live
    assert "\n         - name: MODE\n           value: prod\n+" in web  # context: what Git declares, unchanged
    assert "-  labels:\n" not in web and "selector" in web
    gone = out[:out.index("--- git/Deployment")]
    assert "\n-data:\n-  a: '1'\n" in gone and "\n+ " not in gone  # missing live: all of Git's side removed
    assert "-    team: a\n+    team: b" in out
    assert "3 resources compared, 3 drifted" in proc.stderr  # the summary goes to stderr, stdout stays a diff


def test_diff_is_coloured_on_a_terminal_only(drifted: tuple[Path, Path]) -> None:
    git, live = drifted
    code, screen, _ = run_in_terminal(["scan", "--manifests", str(git), "--live", str(live), "-o", "diff"], 120)
    assert code == 2
    assert "\x1b[31m-  replicas: 2" in screen and "\x1b[32m+  replicas: 5" in screen
    plain = run("scan", "--manifests", str(git), "--live", str(live), "-o", "diff", env={"NO_COLOR": ""})
    assert "-  replicas: 2" in plain.stdout and "\x1b[" not in plain.stdout


LONG = "a-very-long-configuration-key-name-that-no-terminal-of-eighty-columns-can-hold-on-one-line"


def test_table_without_terminal_never_wraps_a_path(tmp_path: Path) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "shop"},
          "data": {LONG: "one", "b": "x"}}
    git = write_yaml(tmp_path / "git" / "cm.yaml", cm)
    live = live_list(tmp_path, {**cm, "data": {LONG: "two", "b": "y"}})
    proc = run("scan", "--manifests", str(git), "--live", str(live), env={"COLUMNS": "60"})
    assert proc.returncode == 2
    lines = proc.stdout.splitlines()
    assert any(f"data.{LONG}: one → two" in line for line in lines)  # whole, on one line
    assert any("data.b: x → y" in line for line in lines)
    assert "\x1b[" not in proc.stdout


@pytest.mark.parametrize("columns", [60, 100, 160])
def test_table_fits_the_terminal(tmp_path: Path, columns: int) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "namespace": "shop"},
          "data": {LONG: "one"}}
    git = write_yaml(tmp_path / "git" / "cm.yaml", cm, deployment())
    live = live_list(tmp_path, {**cm, "data": {LONG: "two"}}, deployment(replicas=0))
    code, screen, _ = run_in_terminal(["scan", "--manifests", str(git), "--live", str(live)], columns)
    assert code == 2
    lines = [ANSI.sub("", line) for line in screen.replace("\r\n", "\n").split("\n")]
    table = [line for line in lines if line.startswith(("┏", "┃", "│", "├", "└", "┡"))]
    assert table and max(len(line) for line in table) <= columns
    assert "Deployment:shop:web" in screen and "2 resources compared, 2 drifted" in "".join(lines)


def test_progress_shows_on_stderr_for_a_slow_step_never_on_stdout(tmp_path: Path) -> None:
    live = live_list(tmp_path, deployment(replicas=5))
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [KUBEDRIFT, "scan", "--manifests", "-", "--live", str(live), "-o", "json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=secondary,
        env={k: v for k, v in os.environ.items() if k != "NO_COLOR"},
    )
    os.close(secondary)
    screen: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(primary, screen))
    reader.start()
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"apiVersion: apps/v1\n")
    proc.stdin.flush()
    time.sleep(3)  # a slow producer (`helm template` of a big chart): reading the manifests takes 3 s
    proc.stdin.write(yaml.safe_dump({k: v for k, v in deployment().items() if k != "apiVersion"}).encode())
    proc.stdin.close()
    stdout = proc.stdout.read().decode()
    assert proc.wait(timeout=120) == 2
    reader.join(timeout=10)
    os.close(primary)
    assert "reading manifests…" in b"".join(screen).decode(errors="replace")  # the spinner, on stderr
    assert json.loads(stdout)["summary"]["drifted"] == 1  # stdout holds the document and nothing else


def test_no_progress_for_a_quick_scan(drifted: tuple[Path, Path]) -> None:
    git, live = drifted
    code, screen, stdout = run_in_terminal(
        ["scan", "--manifests", str(git), "--live", str(live), "-o", "json"], 100, stdout_tty=False
    )
    assert code == 2 and json.loads(stdout)["summary"]["drifted"] == 1
    assert ANSI.sub("", screen).strip() == ""  # nothing flickers on the terminal for a fast scan


@pytest.mark.parametrize("output", ["json", "table", "diff", "yaml"])
def test_closing_the_pipe_early_ends_quietly_with_the_scans_exit_code(tmp_path: Path, output: str) -> None:
    # Far more output than a pipe buffers (64 KiB), so kubedrift still writes after `head` has gone.
    maps = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}", "namespace": "shop"},
             "data": {"key": f"value-{i}"}} for i in range(800)]
    git = write_yaml(tmp_path / "git" / "maps.yaml", *maps)
    live = live_list(tmp_path, *({**m, "data": {"key": "changed"}} for m in maps))
    proc = subprocess.run(
        ["bash", "-c", f'set -o pipefail; "$0" scan --manifests {git} --live {live} -o {output} | head -1', KUBEDRIFT],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 2  # the scan's verdict (drift), through pipefail
    assert proc.stderr == "" or (output == "diff" and "Traceback" not in proc.stderr and "Broken" not in proc.stderr)
    assert len(proc.stdout.splitlines()) == 1


# ----- kubectl plugin ---------------------------------------------------------------------------------


def test_kubectl_drift_plugin(drifted: tuple[Path, Path]) -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is part of the machine set-up (SPEC §5)"
    git, live = drifted
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "NO_COLOR": "1"}
    plugins = subprocess.run([kubectl, "plugin", "list"], capture_output=True, text=True, env=env, check=False)
    assert str(BIN / "kubectl-drift") in plugins.stdout
    proc = subprocess.run([kubectl, "drift", "scan", "--manifests", str(git), "--live", str(live), "-o", "json"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["summary"]["drifted"] == 1
    usage = subprocess.run([kubectl, "drift", "scan"], capture_output=True, text=True, env=env, check=False)
    assert usage.returncode == 1 and "usage: kubectl drift scan" in usage.stderr
