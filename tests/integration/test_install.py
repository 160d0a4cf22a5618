"""The one-file install (`make release-manifests` -> dist/install.yaml) and the kustomize base.

Every rendered object is validated offline against the Kubernetes OpenAPI schemas (kubernetes-validate,
strict: unknown fields are errors), and the install is applied with kubectl to a fresh emulated
cluster that starts serving CRDs when they are created, as an API server does.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from tests.support.installing_emulator import installing_server, kubectl

from kubedrift import __version__
from kubedrift.source.kustomize import render_kustomization

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "dist" / "install.yaml"
# The oldest Kubernetes release still supported upstream when this was written, and the newest bundled.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
# Kinds of the optional parts that come from other projects' CRDs (checked by promtool and their own tests).
FOREIGN_KINDS = {("monitoring.coreos.com", "ServiceMonitor"), ("monitoring.coreos.com", "PrometheusRule")}


@pytest.fixture(scope="module")
def install() -> list[dict[str, Any]]:
    done = subprocess.run(["make", "--no-print-directory", "release-manifests"], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return [d for d in yaml.safe_load_all(INSTALL.read_text()) if d]


def _id(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    return f"{doc['kind']}:{meta.get('namespace', '')}:{meta['name']}"


def test_install_holds_everything_in_apply_order(install: list[dict[str, Any]]) -> None:
    ids = [_id(d) for d in install]
    assert ids[:4] == ["CustomResourceDefinition::driftpolicies.kubedrift.dev",
                       "CustomResourceDefinition::driftreports.kubedrift.dev",
                       "CustomResourceDefinition::clusterkopfpeerings.kopf.dev",
                       "CustomResourceDefinition::kopfpeerings.kopf.dev"]  # for --namespace mode
    assert ids[4] == "Namespace::kubedrift"
    for needed in ("ServiceAccount:kubedrift:kubedrift",
                   "ClusterRole::kubedrift-operator", "ClusterRole::kubedrift-reader",
                   "ClusterRoleBinding::kubedrift-operator", "Deployment:kubedrift:kubedrift",
                   "Service:kubedrift:kubedrift"):
        assert needed in ids
    # Whatever refers to an object comes after it.
    assert ids.index("ServiceAccount:kubedrift:kubedrift") < ids.index("Deployment:kubedrift:kubedrift")
    # The peering object is the operator's to create (kubectl could not apply it beside its CRD).
    assert not [i for i in ids if i.startswith(("ConfigMap:", "ClusterKopfPeering:", "KopfPeering:"))]
    assert ids.index("ClusterRole::kubedrift-operator") < ids.index("ClusterRoleBinding::kubedrift-operator")
    # No object of a CRD defined in the same file: kubectl could not map it on a fresh cluster.
    crd_kinds = {(d["spec"]["group"], d["spec"]["names"]["kind"]) for d in install
                 if d["kind"] == "CustomResourceDefinition"}
    assert not [d for d in install if (d["apiVersion"].rpartition("/")[0], d["kind"]) in crd_kinds]
    deployment = next(d for d in install if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert "initContainers" not in pod and "volumes" in pod
    assert not [v for v in pod["volumes"] if "configMap" in v]
    images = {c["image"] for c in pod["containers"]}
    assert images == {f"ghcr.io/kubedrift/kubedrift:{__version__}"}


def _rendered_optional_parts() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for part in ("mongodb", "prometheus"):
        docs += [d for d in yaml.safe_load_all(render_kustomization(str(REPO / "deploy" / part))) if d]
    return docs


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_rendered_object_fits_the_kubernetes_openapi_schema(install: list[dict[str, Any]],
                                                                  version: str) -> None:
    foreign = []
    problems = []
    for doc in [*install, *_rendered_optional_parts()]:
        if (doc["apiVersion"].rpartition("/")[0], doc["kind"]) in FOREIGN_KINDS:
            foreign.append(doc["kind"])
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{_id(doc)}: {'.'.join(str(p) for p in exc.path)}: {exc.message}")
    assert problems == []
    assert sorted(foreign) == ["PrometheusRule", "ServiceMonitor"]


def test_fresh_cluster_install_applies_in_one_pass(install: list[dict[str, Any]], tmp_path: Path) -> None:
    cluster = installing_server()
    try:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        done = kubectl(kubeconfig, "apply", "-f", str(INSTALL))
        assert done.returncode == 0, done.stderr
        assert done.stdout.count(" created") == len(install)
        for doc in install:
            meta = doc["metadata"]
            assert cluster.get(doc["apiVersion"], doc["kind"], meta.get("namespace"), meta["name"]), _id(doc)
        # The README's next steps answer: the CRDs are served, nothing is reported yet.
        listing = kubectl(kubeconfig, "get", "driftreports", "-A")
        assert listing.returncode == 0 and "No resources found" in listing.stderr
        # Applying the same file again changes nothing.
        again = kubectl(kubeconfig, "apply", "-f", str(INSTALL))
        assert again.returncode == 0 and " created" not in again.stdout and " configured" not in again.stdout
    finally:
        cluster.stop()


def _pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(_id(d), d["spec"]["template"]["spec"]) for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def test_workloads_meet_the_restricted_pod_security_profile(install: list[dict[str, Any]]) -> None:
    specs = _pod_specs(install) + _pod_specs(_rendered_optional_parts())
    assert [name for name, _ in specs] == ["Deployment:kubedrift:kubedrift", "StatefulSet:kubedrift:kubedrift-mongodb"]
    for name, pod in specs:
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["securityContext"].get("runAsUser", 1) != 0, name
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod), name
        assert not [v for v in pod.get("volumes", []) if "hostPath" in v], name
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            where = f"{name} container {container['name']}"
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert container["resources"]["requests"]["memory"] and container["resources"]["limits"]["memory"], where
            repository, _, tag = container["image"].rpartition(":")
            assert repository and tag and tag != "latest" and any(c.isdigit() for c in tag), where
        for container in pod["containers"]:
            assert "readinessProbe" in container and "livenessProbe" in container, f"{name} {container['name']}"


def test_mongodb_credentials_come_from_the_secret_the_operator_reads(install: list[dict[str, Any]]) -> None:
    optional = _rendered_optional_parts()
    assert not [d for d in optional if d["kind"] == "Secret"], "credentials must not ship in the repository"
    (mongodb,) = [d for d in optional if d["kind"] == "StatefulSet"]
    env = {e["name"]: e for e in mongodb["spec"]["template"]["spec"]["containers"][0]["env"]}
    refs = {name: env[name]["valueFrom"]["secretKeyRef"] for name in ("MONGO_INITDB_ROOT_USERNAME",
                                                                        "MONGO_INITDB_ROOT_PASSWORD")}
    deployment = next(d for d in install if d["kind"] == "Deployment")
    operator_env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    uri_ref = operator_env["MONGODB_URI"]["valueFrom"]["secretKeyRef"]
    assert uri_ref["optional"] is True  # the operator runs without MongoDB
    assert {ref["name"] for ref in refs.values()} == {uri_ref["name"]}
    assert {ref["key"] for ref in refs.values()} == {"username", "password"} and uri_ref["key"] == "uri"


def _allows(role: dict[str, Any], group: str, resource: str, verb: str) -> bool:
    return any(group in rule.get("apiGroups", []) and resource in rule.get("resources", [])
               and verb in rule.get("verbs", []) for rule in role["rules"])


def test_api_reader_role_grants_exactly_what_the_rest_api_checks(install: list[dict[str, Any]]) -> None:
    from kubedrift.publish.api_auth import READ_RECORDS, patch_policies

    role = next(d for d in install if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "kubedrift-api-reader")
    for permission in (READ_RECORDS, patch_policies("shop")):
        assert _allows(role, permission.group, permission.resource, permission.verb), permission
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    assert all(g == "kubedrift.dev" and "*" not in (r, v) for g, r, v in granted), granted
    assert not _allows(role, "kubedrift.dev", "driftreports", "delete")


def test_readme_install_steps_are_these(tmp_path: Path) -> None:
    """The commands of README "Run it on a cluster" step 1, run as written against the emulator."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Run it on a cluster"):]
    block = section[section.index("```sh") + len("```sh"):section.index("```", section.index("```sh") + 5)]
    commands = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make release-manifests", "kubectl apply -f dist/install.yaml",
                        "kubectl -n kubedrift rollout status deployment/kubedrift"]
    cluster = installing_server()
    try:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        for command in commands[:2]:
            words = command.split()
            if words[0] == "make":
                done = subprocess.run(words, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
            else:  # relative paths as in the README: run from the repository root
                done = kubectl(kubeconfig, *[str(REPO / w) if w.startswith("dist/") else w for w in words[1:]])
            assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
        # (rollout status needs a kubelet; tests/integration/test_image.py runs that pod from the image.)
        assert cluster.get("apps/v1", "Deployment", "kubedrift", "kubedrift")
    finally:
        cluster.stop()
