"""Tenancy (SPEC §3): what a DriftPolicy may read depends on its namespace and service account.

The API emulator judges impersonation with the RBAC objects stored in it (deploy/rbac.yaml is applied
to it, so the operator's right to impersonate comes from the shipped manifests) and answers 403 like an
API server. Its audit log shows which paths were read as whom. The operator runs as a real process.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.support.corpus import load_one
from tests.support.emulator import EmulatorServer
from tests.support.git_http import GitHttpServer, serve_git_http
from tests.support.operator_process import running_operator
from tests.support.operator_process import wait_for as support_wait_for
from tests.support.ports import free_port

from kubedrift.cluster.access import Tenancy
from kubedrift.cluster.client import ApiError, KubeClient
from kubedrift.cluster.discovery import Discovery
from kubedrift.cluster.live import LiveReader
from kubedrift.model import ResourceKey

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kubedrift.dev", "v1alpha1"
GIT_USER, GIT_TOKEN = "drift-bot", "tok-tenancy-0a1b2c3d"
DEPLOY_LIVE = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-live.yaml"
DEPLOY_GIT = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-config.yaml"
DEPLOYMENT = "nginx-deployment"
VICTIM_VALUE = "victim-db-password-7f3e"
VICTIM_SECRET = "victim-secret-value-91ac"
OUTSIDE = "outside the policy's namespace; set spec.serviceAccountName"
T = TypeVar("T")
_requests = itertools.count(1)


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 45.0) -> T:
    return support_wait_for(check, what, timeout, retry_on=(kubernetes.client.ApiException,))


def _yaml(*bodies: dict[str, Any]) -> str:
    return yaml.safe_dump_all(bodies, sort_keys=False)


def _deployment(namespace: str, source: str = DEPLOY_GIT) -> dict[str, Any]:
    body = copy.deepcopy(load_one(source))
    body["metadata"]["namespace"] = namespace
    return body


def _config_map(namespace: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app-config", "namespace": namespace},
            "data": data}


def _secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque", "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def _git_credentials(namespace: str) -> dict[str, Any]:
    body = _secret(namespace, "git-creds", {"username": GIT_USER, "password": GIT_TOKEN})
    body["metadata"]["labels"] = {"kubedrift.dev/git-credentials": "true"}  # the opt-in (source/git.py)
    return body


def _role(namespace: str, name: str, rules: list[dict[str, Any]], account: tuple[str, str]) -> list[dict[str, Any]]:
    """A Role and the RoleBinding that gives it to ServiceAccount `account` (namespace, name)."""
    rbac = "rbac.authorization.k8s.io/v1"
    return [
        {"apiVersion": rbac, "kind": "Role", "metadata": {"name": name, "namespace": namespace}, "rules": rules},
        {"apiVersion": rbac, "kind": "RoleBinding", "metadata": {"name": name, "namespace": namespace},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
         "subjects": [{"kind": "ServiceAccount", "namespace": account[0], "name": account[1]}]},
    ]


def _workload_reader(namespace: str, account: str) -> list[dict[str, Any]]:
    """What a tenant's drift reader may do in its own namespace: workloads, and its git credentials Secret."""
    return _role(namespace, f"{account}-own", [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["git-creds"]},
    ], (namespace, account))


def _seed_rbac(cluster: EmulatorServer, path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") != "Namespace":
            cluster.seed(doc)


class Harness:
    def __init__(self, cluster: EmulatorServer, git: GitHttpServer, tmp: Path) -> None:
        self.cluster = cluster
        self.git = git
        self.kubeconfig = cluster.write_kubeconfig(tmp / "kubeconfig")
        self.log = tmp / "operator.log"
        self.port = free_port()
        self.env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBEDRIFT_HTTP_PORT": str(self.port),
                    "KUBEDRIFT_GIT_CACHE": str(tmp / "git-cache"), "PYTHONUNBUFFERED": "1",
                    "KUBEDRIFT_ADMIN_NAMESPACES": "platform", "GIT_SSL_CAINFO": str(git.ca_file)}
        self._operator = ExitStack()
        api = kubernetes.config.new_client_from_config(str(self.kubeconfig))
        self.custom = kubernetes.client.CustomObjectsApi(api)

    def start_operator(self, **env: str) -> None:
        self._operator.enter_context(running_operator(
            ["--log-format", "json", "--git-timeout", "20s"], {**self.env, **env}, self.log, self.port))

    def stop_operator(self) -> None:
        self._operator.close()

    def tenant(self, namespace: str, files: dict[str, str], *objects: dict[str, Any]) -> None:
        """A namespace with git credentials, its live objects and a repo with `files`."""
        for body in [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                     _git_credentials(namespace), *objects]:
            self.cluster.seed(body)
        self.git.create_repo(namespace, files)

    def create_policy(self, namespace: str, name: str = "app", **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"source": {"repoURL": self.git.url(namespace), "revision": "main", "paths": ["."],
                                    "secretRef": {"name": "git-creds"}},
                         "interval": "1h", **spec}}
        return self.custom.create_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, namespace, "driftpolicies", body)

    def policy(self, namespace: str, name: str = "app") -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, namespace, "driftpolicies", name)

    def scanned(self, namespace: str, name: str = "app") -> dict[str, Any]:
        return wait_for(lambda: (p := self.policy(namespace, name)).get("status", {}).get("state") and p,
                        f"a scan of {namespace}/{name}")

    def request_scan(self, namespace: str, name: str = "app") -> dict[str, Any]:
        value = f"request-{next(_requests)}"
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "driftpolicies", name,
            {"metadata": {"annotations": {"kubedrift.dev/scan-requested-at": value}}})
        return wait_for(lambda: (p := self.policy(namespace, name)).get("status", {}).get(
            "lastHandledScanRequest") == value and p, f"a scan of {namespace}/{name} handling {value}")

    def reports(self, namespace: str) -> list[dict[str, Any]]:
        return list(self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "driftreports")["items"])

    def all_reports(self) -> list[dict[str, Any]]:
        return list(self.custom.list_cluster_custom_object(GROUP, VERSION, "driftreports")["items"])

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())

    def published(self, namespace: str) -> str:
        """What the tenant of `namespace` can see of its policy (reports, status, events), and the operator's log."""
        events = subprocess.run(["kubectl", "--kubeconfig", str(self.kubeconfig), "-n", namespace, "get", "events",
                                 "-o", "json"], capture_output=True, text=True, timeout=60, check=True).stdout
        return json.dumps(self.reports(namespace)) + json.dumps(self.policy(namespace)) + events + self.log.read_text()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("tenancy")
    cluster = EmulatorServer().start()
    cluster.install_crds(REPO)
    _seed_rbac(cluster, REPO / "deploy" / "rbac.yaml")
    # The victim: a team whose config and secrets no other tenant may see.
    for body in ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "victim"}},
                 _config_map("victim", {"password": VICTIM_VALUE, "mode": "prod"}),
                 _secret("victim", "db", {"password": VICTIM_SECRET})):
        cluster.seed(body)
    try:
        with serve_git_http(tmp / "git", username=GIT_USER, password=GIT_TOKEN, tls=True) as git_server:
            harness = Harness(cluster, git_server, tmp)
            harness.start_operator()
            try:
                yield harness
            finally:
                harness.stop_operator()
    finally:
        cluster.stop()


# ----- the read layer against the emulator, in this process -----


def _reader(harness: Harness, namespace: str, account: str | None = None) -> LiveReader:
    access = Tenancy(frozenset({"platform"})).access_for(namespace, account)
    client = KubeClient.from_environment(str(harness.kubeconfig), timeout=10)
    if access.user:
        view = client.impersonating(access.user)
        assert view.api is client.api  # one connection pool for every identity
        client = view
    return LiveReader(client, Discovery(client), access)


def test_confined_reads_never_ask_for_another_namespace(harness: Harness) -> None:
    harness.cluster.seed(_config_map("reads-a", {"mode": "dev"}))
    keys = [ResourceKey("", "ConfigMap", "victim", "app-config"), ResourceKey("", "ConfigMap", "reads-a", "app-config"),
            ResourceKey("rbac.authorization.k8s.io", "ClusterRole", "", "kubedrift-reader")]
    before = len(harness.cluster.audit())
    live = _reader(harness, "reads-a").read(keys, [("autoscaling", "HorizontalPodAutoscaler")])

    assert [o.key for o in live.objects] == [keys[1]]
    assert live.reason(keys[0]) == OUTSIDE
    assert live.reason(keys[2]) == "cluster-scoped, " + OUTSIDE
    assert live.reason(keys[1]) is None
    asked = [path for _, _, path in harness.cluster.audit()[before:]]
    assert not [p for p in asked if "/namespaces/victim/" in p or p.endswith("/clusterroles")], asked
    assert "/api/v1/namespaces/reads-a/configmaps" in asked
    assert VICTIM_VALUE not in json.dumps([o.body for o in live.objects])


def test_impersonated_reads_get_what_rbac_grants_and_a_reason_for_the_rest(harness: Harness) -> None:
    for body in _role("victim", "reads-b-config", [{"apiGroups": [""], "resources": ["configmaps"],
                                                    "verbs": ["list"]}], ("reads-b", "reader")):
        harness.cluster.seed(body)
    cm, secret = ResourceKey("", "ConfigMap", "victim", "app-config"), ResourceKey("", "Secret", "victim", "db")
    before = len(harness.cluster.audit())
    live = _reader(harness, "reads-b", "reader").read([cm, secret])

    assert [o.key for o in live.objects] == [cm]
    assert live.reason(secret) == "forbidden for system:serviceaccount:reads-b:reader (403 Forbidden)"
    assert any(e.file == "Secret in namespace victim" and "forbidden for system:serviceaccount:reads-b:reader"
               in e.message for e in live.errors), live.errors
    asked = harness.cluster.audit()[before:]
    assert ("system:serviceaccount:reads-b:reader", "list", "/api/v1/namespaces/victim/configmaps") in asked
    assert all(user == "system:serviceaccount:reads-b:reader" for user, _, _ in asked), asked  # discovery too


def test_impersonation_needs_the_right_deploy_grants(tmp_path: Path) -> None:
    """Without deploy/rbac.yaml's `impersonate` rule the API server refuses every impersonated read."""
    cluster = EmulatorServer().start()
    try:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient.from_environment(str(kubeconfig), timeout=10).impersonating(
            "system:serviceaccount:team-a:reader")
        with pytest.raises(ApiError, match='cannot impersonate resource "serviceaccounts"') as refused:
            client.get("/api/v1/namespaces/team-a/configmaps")
        assert refused.value.forbidden
        _seed_rbac(cluster, REPO / "deploy" / "rbac.yaml")
        with pytest.raises(ApiError, match='User "system:serviceaccount:team-a:reader" cannot list'):
            client.get("/api/v1/namespaces/team-a/configmaps")
        assert client.get("/api")["kind"] == "APIVersions"  # discovery stays open to the account
        # Naming the account's groups as well would need `impersonate` on groups, which deploy/ does not
        # grant (it would reach system:masters): that is why the client sends Impersonate-User alone.
        request = urllib.request.Request(f"{cluster.url}/api/v1/namespaces/team-a/configmaps", headers={
            "Authorization": "Bearer test-token", "Impersonate-User": "system:serviceaccount:team-a:reader",
            "Impersonate-Group": "system:serviceaccounts"})
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(request, timeout=10)
        assert denied.value.code == 403
        assert 'cannot impersonate resource "groups"' in json.load(denied.value)["message"]
    finally:
        cluster.stop()


def test_operator_without_the_impersonate_right_says_so(tmp_path: Path) -> None:
    cluster = EmulatorServer().start()
    try:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        client = KubeClient.from_environment(str(kubeconfig), timeout=10)
        access = Tenancy().access_for("team-a", "reader")
        view = client.impersonating(access.user or "")
        live = LiveReader(view, Discovery(client), access).read([ResourceKey("", "ConfigMap", "team-a", "cfg")])
        assert [e.message for e in live.errors] == [
            "not compared: the operator may not impersonate system:serviceaccount:team-a:reader "
            "(grant it impersonate on serviceaccounts, see deploy/rbac.yaml) (403 Forbidden)"]
    finally:
        cluster.stop()


# ----- the operator process -----


def test_policy_outside_admin_namespaces_gets_no_report_about_another_namespace(harness: Harness) -> None:
    ns = "team-a"
    cluster_role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                    "metadata": {"name": "kubedrift-reader"}, "rules": []}
    harness.tenant(ns, {
        "app.yaml": _yaml(_deployment(ns)),
        # The attack: one dummy key; a whole-map compare would return every live key and value.
        "steal.yaml": _yaml(_config_map("victim", {"dummy": "x"}), _secret("victim", "db", {"password": "guess"}),
                            cluster_role),
    }, _deployment(ns, DEPLOY_LIVE))
    before = len(harness.cluster.audit())
    harness.create_policy(ns)
    status = harness.scanned(ns)["status"]

    assert [r["spec"]["resourceId"] for r in harness.reports(ns)] == [], "the Deployment is in sync"
    errors = {e["file"]: e["message"] for e in status["errors"]}
    assert errors == {
        "ConfigMap in namespace victim": f"not compared: {OUTSIDE}",
        "Secret in namespace victim": f"not compared: {OUTSIDE}",
        "ClusterRole.rbac.authorization.k8s.io (cluster-scoped)": f"not compared: cluster-scoped, {OUTSIDE}",
    }
    assert status["resources"] == 1 and status["drifted"] == 0  # only its own Deployment was compared
    assert status["state"] == "Error"
    # Nothing about the other namespace was read, so nothing can leak (not even whether it exists).
    asked = [path for _, _, path in harness.cluster.audit()[before:]]
    assert not [p for p in asked if "/namespaces/victim/" in p or "/clusterroles" in p], asked
    published = harness.published(ns)
    assert VICTIM_VALUE not in published and VICTIM_SECRET not in published
    assert not [r for r in harness.all_reports() if r["spec"]["resource"].get("namespace") == "victim"]


def test_service_account_policy_reads_only_what_the_account_may(harness: Harness) -> None:
    ns, account = "team-b", "drift-reader"
    objects = [*_workload_reader(ns, account),
               *_role("victim", "team-b-config", [{"apiGroups": [""], "resources": ["configmaps"],
                                                   "verbs": ["list"]}], (ns, account))]
    harness.tenant(ns, {
        "app.yaml": _yaml(_deployment(ns)),
        "victim.yaml": _yaml(_config_map("victim", {"password": "from-git", "mode": "prod"}),
                             _secret("victim", "db", {"password": "guess"})),
    }, _deployment(ns, DEPLOY_LIVE), *objects)
    before = len(harness.cluster.audit())
    harness.create_policy(ns, serviceAccountName=account)
    status = harness.scanned(ns)["status"]

    # The ConfigMap may be read by the account: it is compared (and its drift reported).
    reports = {r["spec"]["resourceId"]: r for r in harness.reports(ns)}
    assert list(reports) == ["ConfigMap:victim:app-config"]
    paths = [c["path"] for c in reports["ConfigMap:victim:app-config"]["spec"]["changes"]]
    assert paths == ["data.password"], paths
    # The Secret may not: not compared, with the reason, and no report claims it is missing.
    assert status["errors"] == [{"file": "Secret in namespace victim", "message":
                                 f"not compared: forbidden for system:serviceaccount:{ns}:{account} (403 Forbidden)"}]
    assert status["resources"] == 2
    user = f"system:serviceaccount:{ns}:{account}"
    asked = harness.cluster.audit()[before:]
    # Every read for the policy went out as the account (git credentials and discovery included) ...
    assert (user, "get", f"/api/v1/namespaces/{ns}/secrets/git-creds") in asked
    assert (user, "list", "/api/v1/namespaces/victim/configmaps") in asked
    assert (user, "list", "/apis/apps/v1/namespaces/team-b/deployments") in asked
    reads_as_operator = [(u, v, p) for u, v, p in asked if v in ("get", "list") and u != user
                         and "driftreports" not in p and "driftpolicies" not in p and "events" not in p]
    assert reads_as_operator == [], reads_as_operator
    assert VICTIM_SECRET not in harness.published(ns)


def test_git_credentials_are_read_as_the_policy_account(harness: Harness) -> None:
    """The operator could read the Secret; the policy's account may not, so the policy does not get it."""
    ns = "team-e"
    harness.tenant(ns, {"app.yaml": _yaml(_deployment(ns))}, _deployment(ns, DEPLOY_LIVE),
                   *_role(ns, "no-secrets", [{"apiGroups": ["apps"], "resources": ["deployments"],
                                              "verbs": ["list"]}], (ns, "no-secrets")))
    harness.create_policy(ns, serviceAccountName="no-secrets")
    policy = harness.scanned(ns)
    stalled = next(c for c in policy["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "CredentialsError"
    assert stalled["message"] == (f"spec.source.secretRef: Secret {ns}/git-creds cannot be read: "
                                  f"forbidden for system:serviceaccount:{ns}:no-secrets")


def test_admin_namespace_policy_reads_with_the_operator_rights(harness: Harness) -> None:
    ns = "platform"
    harness.tenant(ns, {"victim.yaml": _yaml(_config_map("victim", {"password": "rotated", "mode": "prod"}))})
    harness.create_policy(ns)
    status = harness.scanned(ns)["status"]
    assert "errors" not in status and status["drifted"] == 1
    assert [r["spec"]["resourceId"] for r in harness.reports(ns)] == ["ConfigMap:victim:app-config"]


def _first_seen(harness: Harness, namespace: str) -> list[float]:
    return [s.value for f in text_string_to_metric_families(harness.metrics()) for s in f.samples
            if s.name == "kubedrift_drift_first_seen_timestamp_seconds" and s.labels["namespace"] == namespace]


def test_restart_trusts_only_reports_owned_by_the_policy_and_lockdown_impersonates(harness: Harness) -> None:
    ns, account = "team-c", "drift-reader"
    harness.tenant(ns, {"app.yaml": _yaml(_deployment(ns))}, _deployment(ns, DEPLOY_LIVE),
                   *_workload_reader(ns, account))
    harness.cluster.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "mallory"}})
    drifted = _deployment(ns, DEPLOY_LIVE)
    drifted["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:9.9"
    harness.cluster.seed(drifted)
    harness.create_policy(ns, serviceAccountName=account)
    genuine = wait_for(lambda: harness.reports(ns), "a report for the drifted Deployment")[0]
    first_seen = datetime.fromisoformat(genuine["spec"]["firstSeen"].replace("Z", "+00:00")).timestamp()

    # Forged reports claim the drift is years old: one in another namespace naming the policy, one in
    # the policy's namespace that the policy does not own.
    forged_at = "2020-01-01T00:00:00Z"
    for where, owner_uid in (("mallory", genuine["metadata"]["ownerReferences"][0]["uid"]), (ns, "forged-uid")):
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftReport",
                "metadata": {"name": "forged", "namespace": where, "ownerReferences": [
                    {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy", "name": "app", "uid": owner_uid}]},
                "spec": {**genuine["spec"], "policy": f"{ns}/app" if where != ns else "app", "firstSeen": forged_at}}
        harness.custom.create_namespaced_custom_object(GROUP, VERSION, where, "driftreports", body)
        harness.custom.patch_namespaced_custom_object_status(GROUP, VERSION, where, "driftreports", "forged",
                                                             {"status": {"state": "Active"}})

    # Restarted in lockdown: policies without serviceAccountName impersonate `kubedrift-reader`.
    harness.stop_operator()
    harness.start_operator(KUBEDRIFT_DEFAULT_SERVICE_ACCOUNT="kubedrift-reader")
    wait_for(lambda: _first_seen(harness, ns), "the first-seen metric after the restart")
    assert _first_seen(harness, ns) == [first_seen]
    # The genuine age (from the captured object's managedFields, 2022), not the forged 2020 one.
    assert first_seen > datetime.fromisoformat(forged_at.replace("Z", "+00:00")).timestamp()

    # team-a's policy names no account: now it reads as team-a's kubedrift-reader, which RBAC grants
    # nothing, not even the git credentials Secret of its own namespace.
    policy = harness.request_scan("team-a")
    stalled = next(c for c in policy["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["reason"] == "CredentialsError"
    assert stalled["message"].endswith("forbidden for system:serviceaccount:team-a:kubedrift-reader")
    # Once RBAC grants it its own workloads, it compares them, and still nothing elsewhere.
    for body in _workload_reader("team-a", "kubedrift-reader"):
        harness.cluster.seed(body)
    status = harness.request_scan("team-a")["status"]
    errors = {e["file"]: e["message"] for e in status["errors"]}
    who = "system:serviceaccount:team-a:kubedrift-reader"
    assert errors["ConfigMap in namespace victim"] == f"not compared: forbidden for {who} (403 Forbidden)"
    assert "Deployment.apps in namespace team-a" not in errors and status["resources"] == 1
