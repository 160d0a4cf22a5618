"""Hostile input against `kubedrift scan` and the operator (issue 8): every attack ends within seconds
with a clear error naming the file or field, in bounded memory, without a crash, without echoing the
value it read, and everything else is still scanned.

The attacks: YAML nested 30,000 deep (flow and block; this segfaulted libyaml's composer), an alias
bomb and a merge-key bomb, a file far beyond the size limit, YAML tags whose value does not fit (`!!int`, `!!float`,
`!!bool` carrying a secret), a symlink to a file outside the repository, kustomize remote resources
and bases (a listener on 127.0.0.1 proves no request is made) and `../` out of the checkout, a
secretGenerator literal typo, jq expressions that never end or select a billion paths, an invalid jq
expression, git URLs and credential Secrets a tenant must not use.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from tests.support.emulator import EmulatorServer
from tests.support.git_http import GitHttpServer, init_repo, serve_git_http
from tests.support.operator_process import running_operator, wait_for
from tests.support.ports import free_port

from kubedrift.model import KubeObject
from kubedrift.source.bounds import MAX_OBJECTS_PER_SCAN
from kubedrift.source.manifests import load_manifests

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kubedrift.dev", "v1alpha1"
MARKER = "Hunter2-s3cret-value-never-shown"
CREDENTIALS_LABEL = {"kubedrift.dev/git-credentials": "true"}
GIT_USER, GIT_TOKEN = "hostile-bot", "tok-hostile-0123456789-never-shown"
MAX_RSS_MIB = 400


def _bomb() -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"  # 9^9 (387 million) leaves once expanded


def _merge_bomb() -> str:
    lines = ["m0: &m0 {k: x}"] + [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 9)}]}}" for i in range(1, 12)]
    return "\n".join(lines) + "\n"  # merge keys copy 9^11 key lists while PyYAML constructs


def _secret_with(tag: str) -> str:
    return f"apiVersion: v1\nkind: Secret\nmetadata: {{name: tagged}}\nstringData:\n  password: {tag} {MARKER}\n"


def _config_map(name: str, value: str) -> str:
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: shop}}\ndata: {{mode: {value}}}\n"


def hostile_files(trap: str, big_bytes: int) -> dict[str, str]:
    """Every file attack in one repository tree, beside `good/cm.yaml` (the object that must still be compared)."""
    return {
        "good/cm.yaml": _config_map("good", "git"),
        "good/victim.yaml": _config_map("victim", "git"),
        "yaml/deep-flow.yaml": "a: " + "[" * 30_000 + "]" * 30_000 + "\n",
        "yaml/deep-block.yaml": "- " * 30_000 + "x\n",
        "yaml/bomb.yaml": _bomb(),
        "yaml/merge-bomb.yaml": _merge_bomb(),
        "yaml/big.yaml": "# " + "x" * big_bytes + "\n",
        "yaml/tag-int.yaml": _secret_with("!!int"),
        "yaml/tag-float.yaml": _secret_with("!!float"),
        "yaml/tag-bool.yaml": _secret_with("!!bool"),
        "kustomize-remote/kustomization.yaml": f"resources:\n- {trap}/cm.yaml\n",
        "kustomize-gitbase/kustomization.yaml": f"resources:\n- git::{trap}/repo.git//base?ref=main\n",
        "kustomize-typo/kustomization.yaml": f"secretGenerator:\n- name: db\n  literals:\n  - {MARKER}\n",
    }


def outside_manifest(directory: Path) -> Path:
    """A valid manifest outside the repository that a symlink in it points to."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "outside.yaml"
    path.write_text(_config_map("leaked", MARKER))
    return path


@pytest.fixture
def trap() -> Iterator[tuple[str, list[str]]]:
    """An HTTP listener on 127.0.0.1 that records every connection: kustomize must never reach it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    hits: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            hits.append("connection")
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}", hits
    finally:
        stop.set()
        thread.join()
        server.close()


def _scan(args: list[str], timeout: float = 120.0) -> tuple[int, dict[str, Any], str, int]:
    """`kubedrift scan ... -o json` as a process: exit code, output, stderr, its own peak RSS in MiB."""
    process = subprocess.Popen([sys.executable, "-m", "kubedrift", "scan", *args, "--output", "json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout is not None and process.stderr is not None
    outputs: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda n=n, s=s: outputs.__setitem__(n, s.read()))
               for n, s in (("out", process.stdout), ("err", process.stderr))]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + timeout
    while True:  # reaped here, not by Popen, to read the child's own resource usage
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"kubedrift scan did not finish within {timeout:g}s")
        time.sleep(0.05)
    process.returncode = code = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join()
    err = outputs["err"].decode(errors="replace")
    assert code >= 0, f"kubedrift scan was killed by signal {-code}: {err[-2000:]}"
    return code, json.loads(outputs["out"]), err, int(usage.ru_maxrss / 1024)


def test_scan_survives_every_file_attack_and_still_compares_the_rest(
    tmp_path: Path, trap: tuple[str, list[str]]
) -> None:
    url, hits = trap
    repo = tmp_path / "repo"
    init_repo(repo, hostile_files(url, 28 * 1024 * 1024))
    (repo / "links").mkdir()
    (repo / "links" / "leak.yaml").symlink_to(outside_manifest(tmp_path / "elsewhere"))
    live = tmp_path / "live.yaml"
    live.write_text(_config_map("good", "live") + "---\n" + _config_map("victim", "live"))
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy", "metadata": {"name": "p"},
        "spec": {"ignoreDifferences": [
            {"kind": "ConfigMap", "name": "victim", "jqPathExpressions": ["def f: f; f", ".zz[range(1e9)]"]},
        ]},
    }))

    started = time.monotonic()
    code, result, stderr, rss = _scan(["--manifests", str(repo), "--live", str(live), "--policy", str(policy)])
    elapsed = time.monotonic() - started

    text = json.dumps(result) + stderr
    assert MARKER not in text and base64.b64encode(MARKER.encode()).decode() not in text
    assert code == 1  # errors listed, exit code 1
    errors = {e["file"]: e["message"] for e in result["errors"]}
    assert "nested deeper than 100 levels at line 1" in errors["yaml/deep-flow.yaml"]
    assert "nested deeper than 100 levels at line 1" in errors["yaml/deep-block.yaml"]
    assert "excessive aliasing" in errors["yaml/bomb.yaml"]
    assert "excessive aliasing" in errors["yaml/merge-bomb.yaml"]
    assert "more than the limit of" in errors["yaml/big.yaml"]
    for tag in ("int", "float", "bool"):
        expected = f"invalid YAML at line 5, column 13: the value does not fit its {tag} tag"
        assert errors[f"yaml/tag-{tag}.yaml"] == expected
    assert errors["links/leak.yaml"] == "a symbolic link that leads out of the repository; not read"
    assert "remote resources are never fetched" in errors["kustomize-remote"]
    assert "remote resources are never fetched" in errors["kustomize-gitbase"]
    assert "invalid literal source ***" in errors["kustomize-typo"]
    victim_error = errors["good/victim.yaml"]
    assert "ConfigMap:shop:victim: cannot compare: jqPathExpression" in victim_error
    assert "did not finish within 1s" in victim_error or "selects more than" in victim_error
    # The rest is compared: the drift of the good ConfigMap is found; the outside file was never read.
    assert [d["id"] for d in result["drifts"]] == ["ConfigMap:shop:good"]
    assert result["drifts"][0]["changes"][0]["live"] == "live"
    assert hits == []  # kustomize made no request
    assert rss < MAX_RSS_MIB, f"peak RSS {rss} MiB"
    assert elapsed < 60, f"took {elapsed:.1f}s"


def test_scan_rejects_an_invalid_jq_expression_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "cm.yaml").write_text(_config_map("good", "git"))
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy", "metadata": {"name": "p"},
        "spec": {"ignoreDifferences": [{"kind": "ConfigMap", "jqPathExpressions": [".spec", ".metadata[["]}]},
    }))

    code, result, _, _ = _scan(["--manifests", str(tmp_path / "cm.yaml"), "--live", str(tmp_path / "cm.yaml"),
                                "--policy", str(policy)])

    assert code == 1
    assert result["errors"][0]["message"].startswith(
        "spec.ignoreDifferences[0].jqPathExpressions[1]: invalid jq expression: syntax error")


def test_objects_beyond_the_limit_per_scan_are_an_error_and_the_first_ones_load(tmp_path: Path) -> None:
    items = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"cm-{i}"}}
             for i in range(MAX_OBJECTS_PER_SCAN + 5)]
    (tmp_path / "many.json").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    objects, errors = load_manifests([str(tmp_path)])

    assert len(objects) == MAX_OBJECTS_PER_SCAN
    assert isinstance(objects[-1], KubeObject) and objects[-1].name == f"cm-{MAX_OBJECTS_PER_SCAN - 1}"
    assert [e.message for e in errors] == [
        f"document 1, item {MAX_OBJECTS_PER_SCAN + 1}: more than {MAX_OBJECTS_PER_SCAN} objects in one scan; "
        "this one and all that follow are not read"
    ]


# ----- the operator -----

class Cluster:
    def __init__(self, emulator: EmulatorServer, kubeconfig: Path, base: str, git: GitHttpServer) -> None:
        self.emulator = emulator
        self.base = base
        self.git = git
        api = kubernetes.config.new_client_from_config(str(kubeconfig))
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)

    def namespace(self, name: str) -> None:
        self.emulator.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def policy(self, namespace: str, name: str, source: dict[str, Any], **spec: Any) -> None:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"source": source, "interval": "1h", **spec}}
        self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "driftpolicies", body)

    def status(self, namespace: str, name: str) -> dict[str, Any] | None:
        body = self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "driftpolicies", name)
        status = body.get("status") or {}
        return status if status.get("state") else None

    def reports(self, namespace: str) -> list[dict[str, Any]]:
        return list(self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "driftreports")["items"])

    def peak_rss_mib(self) -> int:
        """VmHWM of the operator process (a child of this test process)."""
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            if parent == os.getpid() and b"kubedrift" in cmdline and b"run" in cmdline:
                return next(int(line.split()[1]) // 1024 for line in status.splitlines() if line.startswith("VmHWM:"))
        raise AssertionError("the operator process was not found")

    def healthz_seconds(self) -> float:
        started = time.monotonic()
        with urllib.request.urlopen(self.base + "/healthz", timeout=10) as answer:
            assert answer.status == 200
        return time.monotonic() - started


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("hostile-operator")
    emulator = EmulatorServer().start()
    emulator.install_crds(REPO)
    kubeconfig = emulator.write_kubeconfig(tmp / "kubeconfig")
    port = free_port()
    try:
        with serve_git_http(tmp / "git", username=GIT_USER, password=GIT_TOKEN, tls=True) as git:
            # Neither KUBEDRIFT_ALLOW_INSECURE_HTTP nor KUBEDRIFT_ALLOW_FILE_REPOS: the defaults are tested.
            env = {k: v for k, v in os.environ.items() if not k.startswith("KUBEDRIFT_ALLOW_")}
            env.update({"KUBECONFIG": str(kubeconfig), "KUBEDRIFT_HTTP_PORT": str(port),
                        "KUBEDRIFT_GIT_CACHE": str(tmp / "git-cache"), "PYTHONUNBUFFERED": "1",
                        "GIT_SSL_CAINFO": str(git.ca_file)})
            with running_operator(["--git-timeout", "20s"], env, tmp / "operator.log", port) as base:
                yield Cluster(emulator, kubeconfig, base, git)
    finally:
        emulator.stop()


def _credentials(cluster: Cluster, namespace: str, name: str, labels: dict[str, str] | None = None,
                 **extra: str) -> None:
    data = {"username": GIT_USER, "password": GIT_TOKEN, **extra}
    cluster.core.create_namespaced_secret(namespace, {
        "metadata": {"name": name, "labels": labels or {}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})


def test_operator_survives_hostile_repos_and_policies_and_scans_the_rest(
    cluster: Cluster, trap: tuple[str, list[str]], tmp_path: Path
) -> None:
    url, hits = trap
    ns = "hostile"
    cluster.namespace(ns)
    cluster.emulator.seed(yaml.safe_load(_config_map("good", "live").replace("shop", ns)))
    cluster.emulator.seed(yaml.safe_load(_config_map("victim", "live").replace("shop", ns)))
    files = {k.replace("good/", "apps/"): v.replace("namespace: shop", f"namespace: {ns}")
             for k, v in hostile_files(url, 5 * 1024 * 1024).items()}
    files["apps/kustomize-escape/kustomization.yaml"] = "resources:\n- ../../../../outside\n"
    cluster.git.create_repo(ns, files)
    work = cluster.git.work / ns
    (work / "links").mkdir()
    (work / "links" / "leak.yaml").symlink_to(outside_manifest(tmp_path / "elsewhere"))
    cluster.git.commit(ns, {}, "a symlink out of the repository")
    _credentials(cluster, ns, "git", CREDENTIALS_LABEL)
    source = {"repoURL": cluster.git.url(ns), "revision": "main", "secretRef": {"name": "git"}}
    cluster.policy(ns, "files", source)
    cluster.policy(ns, "loops", {**source, "paths": ["apps"]}, ignoreDifferences=[
        {"kind": "ConfigMap", "name": "victim", "jqPathExpressions": ["def f: f; f"]}])
    cluster.policy(ns, "broken-jq", source, ignoreDifferences=[{"jqPathExpressions": [".a[["]}])

    # Until the scan with the looping jq is done, the operator keeps answering its health checks.
    answers: list[float] = []

    def loops_done() -> dict[str, Any] | None:
        answers.append(cluster.healthz_seconds())
        return cluster.status(ns, "loops")

    loops_status = wait_for(loops_done, "the scan with a looping jq", timeout=90)
    slowest = max(answers)
    files_status = wait_for(lambda: cluster.status(ns, "files"), "the scan of the hostile files", timeout=90)
    broken = wait_for(lambda: cluster.status(ns, "broken-jq"), "the policy with a broken jq", timeout=90)
    assert slowest < 5.0, f"/healthz took {slowest:.2f}s"  # in-process jq: no answer at all

    errors = {e["file"]: e["message"] for e in files_status.get("errors", [])}
    assert "nested deeper than 100 levels" in errors["yaml/deep-flow.yaml"]
    assert "nested deeper than 100 levels" in errors["yaml/deep-block.yaml"]
    assert "excessive aliasing" in errors["yaml/bomb.yaml"]
    assert "more than the limit of" in errors["yaml/big.yaml"]
    assert "does not fit its int tag" in errors["yaml/tag-int.yaml"]
    assert errors["links/leak.yaml"] == "a symbolic link that leads out of the repository; not read"
    assert "remote resources are never fetched" in errors["kustomize-remote"]
    assert "leads out of the repository" in errors["apps/kustomize-escape"] or \
        "not a file or directory in the repository" in errors["apps/kustomize-escape"]
    assert "invalid literal source ***" in errors["kustomize-typo"]
    assert any("victim" in m and "jqPathExpression 'def f: f; f' did not finish within 1s" in m
               for m in (e["message"] for e in loops_status.get("errors", [])))
    stalled = next(c for c in broken["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "InvalidPolicy"
    assert stalled["message"].startswith("spec.ignoreDifferences[0].jqPathExpressions[0]: invalid jq expression")
    # Everything else was compared: the good ConfigMap's drift is reported, by both scans.
    ids = sorted(r["spec"]["resourceId"] for r in cluster.reports(ns))
    assert f"ConfigMap:{ns}:good" in ids and f"ConfigMap:{ns}:leaked" not in ids
    assert hits == []
    assert cluster.peak_rss_mib() < MAX_RSS_MIB, f"operator peak RSS {cluster.peak_rss_mib()} MiB"
    published = json.dumps(cluster.reports(ns)) + json.dumps(files_status) + json.dumps(loops_status)
    published += json.dumps([e.to_dict() for e in cluster.core.list_namespaced_event(ns).items], default=str)
    assert MARKER not in published and GIT_TOKEN not in published


@pytest.mark.parametrize(
    ("repo_url", "expected"),
    [
        ("file:///var/lib/kubedrift/git/0123/repo.git",
         "file:// repositories are refused unless KUBEDRIFT_ALLOW_FILE_REPOS=1"),
        ("/tmp/some/repo", "local repository paths are refused unless KUBEDRIFT_ALLOW_FILE_REPOS=1"),
        ("http://127.0.0.1:1/repo.git", "plain http:// is refused unless KUBEDRIFT_ALLOW_INSECURE_HTTP=1"),
        ("ext::sh -c touch% /tmp/pwned", "remote helpers such as ext:: are never allowed"),
        ("git://127.0.0.1/repo.git", "unsupported transport git://"),
        (f"https://{GIT_USER}:pa/ss#w?rd@127.0.0.1:1/repo.git", "user info in the URL is not allowed"),
    ],
)
def test_operator_refuses_transports_a_tenant_must_not_use(cluster: Cluster, repo_url: str, expected: str) -> None:
    ns = "transports"
    if not any(n.metadata.name == ns for n in cluster.core.list_namespace().items):
        cluster.namespace(ns)
    name = f"p{abs(hash(repo_url)) % 10**8}"
    cluster.policy(ns, name, {"repoURL": repo_url})

    status = wait_for(lambda: cluster.status(ns, name), f"the scan of {name}", timeout=60)

    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "GitError" and expected in stalled["message"]
    assert "pa/ss" not in stalled["message"] and "w?rd" not in stalled["message"]
    assert not os.path.exists("/tmp/pwned")


def test_credentials_only_from_opted_in_secrets_for_their_url_and_never_over_http(cluster: Cluster) -> None:
    ns = "creds"
    cluster.namespace(ns)
    cluster.git.create_repo(ns, {"apps/cm.yaml": _config_map("good", "git").replace("shop", ns)})
    _credentials(cluster, ns, "plain")  # e.g. a service-account token Secret: no opt-in label
    _credentials(cluster, ns, "other-host", CREDENTIALS_LABEL, url="https://git.example.com/team")
    _credentials(cluster, ns, "prefix-trick", CREDENTIALS_LABEL, url=cluster.git.url(ns).removesuffix(".git"))
    before = (len(cluster.git.authenticated), cluster.git.rejected)
    cluster.policy(ns, "plain", {"repoURL": cluster.git.url(ns), "secretRef": {"name": "plain"}})
    cluster.policy(ns, "other-host", {"repoURL": cluster.git.url(ns), "secretRef": {"name": "other-host"}})
    cluster.policy(ns, "prefix-trick", {"repoURL": cluster.git.url(ns), "secretRef": {"name": "prefix-trick"}})

    for name, expected in (("plain", 'is not labelled kubedrift.dev/git-credentials: "true"'),
                           ("other-host", "does not cover spec.source.repoURL"),
                           ("prefix-trick", "does not cover spec.source.repoURL")):
        status = wait_for(lambda n=name: cluster.status(ns, n), f"the scan of {name}", timeout=60)
        stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
        assert stalled["reason"] == "CredentialsError" and expected in stalled["message"], stalled
        assert GIT_TOKEN not in json.dumps(status)
    assert (len(cluster.git.authenticated), cluster.git.rejected) == before  # nothing was sent anywhere
