"""Remediation against the API emulator over real HTTP: dry runs change nothing, Apply puts replicas, image and
a missing object back as Git says and removes a hand-added env var, Secrets stay untouched unless named,
at most N objects per scan, and every write goes through the policy's impersonated identity."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.emulator import EmulatorServer
from tests.support.objects import deployment, managed, with_managed

from kubedrift.cluster.access import Tenancy
from kubedrift.cluster.client import KubeClient
from kubedrift.cluster.discovery import Discovery
from kubedrift.cluster.live import LiveReader
from kubedrift.diff.compare import compare_objects, identity
from kubedrift.model import DiffSettings, KubeObject, RemediationMode, RemediationSpec, ScanResult
from kubedrift.publish.fix import propose_fixes
from kubedrift.publish.remediation import FAILED, SKIPPED, SUCCEEDED, Remediator, plan

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NS = "shop"
ACCOUNT = "drift-fixer"
GIT_PASSWORD = "from-git-s3cret"
HAND_PASSWORD = "typed-by-hand"


def _service() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def _secret(password: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": NS}, "type": "Opaque",
            "data": {"password": base64.b64encode(password.encode()).decode()}}


def _git() -> list[dict[str, Any]]:
    return [deployment(namespace=NS), _service(), _secret(GIT_PASSWORD)]


def _fixer_rbac(verbs: list[str]) -> list[dict[str, Any]]:
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": rbac, "kind": "Role", "metadata": {"name": "fixer", "namespace": NS}, "rules": [
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": verbs},
            {"apiGroups": [""], "resources": ["services", "secrets"], "verbs": verbs}]},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": "fixer", "namespace": NS},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "fixer"},
         "subjects": [{"kind": "ServiceAccount", "namespace": NS, "name": ACCOUNT}]},
    ]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[EmulatorServer, KubeClient]]:
    server = EmulatorServer().start()
    try:
        for doc in yaml.safe_load_all((ROOT / "deploy/rbac.yaml").read_text()):
            if doc and doc.get("kind") != "Namespace":
                server.seed(doc)  # the operator's right to impersonate comes from the shipped manifests
        live = deployment(namespace=NS)
        live["spec"]["replicas"] = 7
        live["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/example/web:hotfix"
        live["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "DEBUG", "value": "1"})
        server.seed(with_managed(live, managed("kubectl-edit", {"f:spec": {"f:template": {"f:spec": {
            "f:containers": {'k:{"name":"web"}': {"f:env": {'k:{"name":"DEBUG"}': {
                ".": {}, "f:name": {}, "f:value": {}}}}}}}}})))
        server.seed(_secret(HAND_PASSWORD))
        client = KubeClient.from_environment(str(server.write_kubeconfig(tmp_path / "kubeconfig")), timeout=10)
        yield server, client
    finally:
        server.stop()


def _scan(client: KubeClient) -> tuple[ScanResult, list[KubeObject], list[KubeObject]]:
    desired = [KubeObject(copy.deepcopy(b), "apps/shop.yaml") for b in _git()]
    live = LiveReader(client, Discovery(client)).read([identity(o) for o in desired]).objects
    result = compare_objects(desired, live, DiffSettings())
    propose_fixes(result, desired, live, DiffSettings())
    return result, desired, live


def _remediate(client: KubeClient, spec: RemediationSpec, *, account: str | None = ACCOUNT,
               reported: set[str] | None = None) -> dict[str, Any]:
    result, desired, live = _scan(client)
    access = Tenancy(frozenset({"kubedrift"})).access_for(NS, account)
    writer = client.impersonating(access.user) if access.user else client
    chosen = plan(result.drifts, spec, reported={d.id for d in result.drifts} if reported is None else reported,
                  may_write=access.user is not None)
    return Remediator(writer, Discovery(writer)).run(chosen, spec.mode, desired, live, DiffSettings())


def _drifted(client: KubeClient) -> set[str]:
    return {d.id for d in _scan(client)[0].drifts}


DEPLOY, SERVICE, SECRET = f"Deployment:{NS}:web", f"Service:{NS}:web", f"Secret:{NS}:db"


def test_apply_puts_back_what_git_declares(cluster: tuple[EmulatorServer, KubeClient]) -> None:
    server, client = cluster
    for doc in _fixer_rbac(["get", "list", "patch", "create"]):
        server.seed(doc)
    assert _drifted(client) == {DEPLOY, SERVICE, SECRET}
    done = _remediate(client, RemediationSpec(mode=RemediationMode.APPLY))
    assert {rid: r.result for rid, r in done.items()} == {DEPLOY: SUCCEEDED, SERVICE: SUCCEEDED}
    live = server.get("apps/v1", "Deployment", NS, "web")
    assert live is not None
    assert live["spec"]["replicas"] == 2
    container = live["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/example/web:1.0.0"
    assert [e["name"] for e in container["env"]] == ["MODE"]
    assert server.get("v1", "Service", NS, "web") is not None  # the missing object is created
    assert _drifted(client) == {SECRET}  # the rescan finds only the Secret nobody opted in
    secret = server.get("v1", "Secret", NS, "db")
    assert secret is not None and base64.b64decode(secret["data"]["password"]).decode() == HAND_PASSWORD
    writes = [(user, verb) for user, verb, path in server.audit() if verb in ("patch", "create")]
    assert writes and all(user == f"system:serviceaccount:{NS}:{ACCOUNT}" for user, _ in writes)


def test_dry_run_changes_nothing_and_says_what_would_happen(cluster: tuple[EmulatorServer, KubeClient]) -> None:
    server, client = cluster
    for doc in _fixer_rbac(["get", "list", "patch", "create"]):
        server.seed(doc)
    before = server.get("apps/v1", "Deployment", NS, "web")
    done = _remediate(client, RemediationSpec(mode=RemediationMode.DRY_RUN))
    assert done[DEPLOY].result == SUCCEEDED and done[DEPLOY].message.startswith("server-side dry run:")
    assert server.get("apps/v1", "Deployment", NS, "web") == before
    assert server.get("v1", "Service", NS, "web") is None
    assert _drifted(client) == {DEPLOY, SERVICE, SECRET}


def test_secret_only_when_named_and_its_value_comes_from_git(cluster: tuple[EmulatorServer, KubeClient]) -> None:
    server, client = cluster
    for doc in _fixer_rbac(["get", "list", "patch", "create"]):
        server.seed(doc)
    done = _remediate(client, RemediationSpec(mode=RemediationMode.APPLY, include_kinds=("Secret",)))
    assert set(done) == {SECRET} and done[SECRET].result == SUCCEEDED
    secret = server.get("v1", "Secret", NS, "db")
    assert secret is not None and base64.b64decode(secret["data"]["password"]).decode() == GIT_PASSWORD
    shown = repr(done) + str([r.to_json() for r in done.values()])
    assert GIT_PASSWORD not in shown and base64.b64encode(GIT_PASSWORD.encode()).decode() not in shown


def test_rate_limit_and_only_reported_drift(cluster: tuple[EmulatorServer, KubeClient]) -> None:
    server, client = cluster
    for doc in _fixer_rbac(["get", "list", "patch", "create"]):
        server.seed(doc)
    assert _remediate(client, RemediationSpec(mode=RemediationMode.APPLY), reported=set()) == {}
    done = _remediate(client, RemediationSpec(mode=RemediationMode.APPLY, max_per_scan=1))
    assert [r.result for r in done.values()].count(SUCCEEDED) == 1
    skipped = [r for r in done.values() if r.result == SKIPPED]
    assert len(skipped) == 1 and skipped[0].message.startswith("rate limit: at most 1 per scan")
    assert len(_drifted(client)) == 2


def test_writes_need_the_policy_identity_and_its_rights(cluster: tuple[EmulatorServer, KubeClient]) -> None:
    server, client = cluster
    for doc in _fixer_rbac(["get", "list"]):  # the account may read, not write
        server.seed(doc)
    done = _remediate(client, RemediationSpec(mode=RemediationMode.APPLY))
    assert {r.result for r in done.values()} == {FAILED}
    assert "403" in done[DEPLOY].message and f"system:serviceaccount:{NS}:{ACCOUNT}" in done[DEPLOY].message
    confined = _remediate(client, RemediationSpec(mode=RemediationMode.APPLY), account=None)
    assert {r.result for r in confined.values()} == {SKIPPED}
    assert "spec.serviceAccountName" in confined[DEPLOY].message
    assert _drifted(client) == {DEPLOY, SERVICE, SECRET}


# ----- deploy/: read-only unless the remediation component is added -----

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}
OPERATOR_OWN = {"kubedrift.dev", "kopf.dev", "authentication.k8s.io", "authorization.k8s.io", "events.k8s.io"}


def _render(tmp_path: Path, components: list[str]) -> list[dict[str, Any]]:
    import shutil
    import subprocess

    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(
        {"resources": ["../deploy"], "components": [f"../deploy/{c}" for c in components]}))
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _writes_on_watched_objects(docs: list[dict[str, Any]]) -> set[tuple[str, str]]:
    found = set()
    for doc in docs:
        if doc["kind"] not in ("ClusterRole", "Role"):
            continue
        if doc["kind"] == "Role" and doc["metadata"].get("namespace") == "kubedrift":
            continue  # the operator's own namespace: its digest key Secret, nothing a policy compares
        for rule in doc.get("rules") or []:
            if not WRITE_VERBS & set(rule.get("verbs") or []):
                continue
            for group in rule.get("apiGroups") or []:
                for resource in rule.get("resources") or []:
                    if group in OPERATOR_OWN or (group == "" and resource == "events"):
                        continue
                    found.add((group, resource))
    return found


def test_base_install_is_read_only_and_the_component_adds_writes(tmp_path: Path) -> None:
    assert _writes_on_watched_objects(_render(tmp_path / "base", [])) == set()
    with_component = _render(tmp_path / "opt-in", ["remediation"])
    writes = _writes_on_watched_objects(with_component)
    assert ("apps", "deployments") in writes and ("", "services") in writes
    assert not any(resource == "secrets" or group == "rbac.authorization.k8s.io" for group, resource in writes)
    binding = next(d for d in with_component if d["kind"] == "ClusterRoleBinding"
                   and d["metadata"]["name"] == "kubedrift-remediator")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "kubedrift", "namespace": "kubedrift"}]


def test_the_reports_kubectl_line_puts_the_object_back(cluster: tuple[EmulatorServer, KubeClient],
                                                       tmp_path: Path) -> None:
    """The `spec.fix.command` of a DriftReport, run as a person would (bash, kubectl), leaves no drift."""
    import os
    import subprocess

    from kubedrift.model import PolicyRef
    from kubedrift.publish.reports import report_name, report_spec

    server, client = cluster
    server.register_crd_file(ROOT / "crds" / "driftreport.yaml")
    result, _, _ = _scan(client)
    policy = PolicyRef("kubedrift", "prod", "uid-1")
    deploy = next(d for d in result.drifts if d.id == DEPLOY)
    name = report_name(policy, deploy.id)
    spec = report_spec(policy, deploy, "abc123", "2026-01-02T03:04:05Z")
    client.request("POST", "/apis/kubedrift.dev/v1alpha1/namespaces/kubedrift/driftreports",
                   body={"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftReport",
                         "metadata": {"name": name, "namespace": "kubedrift"}, "spec": spec})
    kubeconfig = server.write_kubeconfig(tmp_path / "person-kubeconfig")
    # The emulator serves no OpenAPI document, which kubectl apply's client-side validation downloads:
    # the one concession is a kubectl on PATH that adds --validate=false to `apply`.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text('#!/bin/sh\nif [ "$1" = apply ]; then shift; '
                                     'exec /usr/bin/kubectl apply --validate=false "$@"; fi\n'
                                     'exec /usr/bin/kubectl "$@"\n')
    (bin_dir / "kubectl").chmod(0o755)
    done = subprocess.run(["bash", "-c", spec["fix"]["command"]], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KUBECONFIG": str(kubeconfig),
                               "PATH": f"{bin_dir}:{os.environ['PATH']}"}, check=False)
    assert done.returncode == 0, done.stderr
    assert DEPLOY not in _drifted(client)
    applied = [path for user, verb, path in server.audit() if verb == "patch" and path.endswith("/deployments/web")]
    assert len(applied) == 2  # the guarded removal, then the server-side apply
