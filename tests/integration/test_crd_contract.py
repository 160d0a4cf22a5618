"""The CRDs as a cluster user meets them: `kubectl explain` text on every field, CEL rules that refuse
invalid combinations (evaluated with cel-python, as the API server would with cel-go), short names
that do not shadow popular CRDs, and `kubectl get driftreports -A` that fits a terminal.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from tests.support.emulator import EmulatorServer
from tests.support.installing_emulator import kubectl

from kubedrift.model import Category, Change, DriftState, ResourceDrift, ResourceKey, ResourceRef, Severity
from kubedrift.publish.reports import PolicyRef, report_name, report_spec

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CRDS = ("driftpolicy.yaml", "driftreport.yaml")

# Short names of widely installed CRDs and built-in kinds (from their published CRDs and `kubectl
# api-resources`): Istio, cert-manager, Argo CD / Rollouts, Flux, Kyverno, Prometheus Operator, Knative,
# KEDA, External Secrets, Tekton, Crossplane, KubeVirt, CSI snapshots, Kubernetes itself.
TAKEN_SHORT_NAMES = {
    "dr", "vs", "gw", "se", "we", "pa", "ap", "ra",                      # Istio
    "cert", "certs", "cr", "crs",                                        # cert-manager
    "app", "apps", "appproj", "appprojs", "appset", "appsets",           # Argo CD
    "ro", "at", "ar", "exp",                                             # Argo Rollouts
    "ks", "hr", "gitrepo", "helmrepo", "hc", "ocirepo",                  # Flux
    "pol", "cpol", "polr", "cpolr",                                      # Kyverno
    "prom", "am", "smon", "pmon", "promrule", "prb",                     # Prometheus Operator
    "ksvc", "kservice", "rt", "rev", "cfg", "config",                    # Knative
    "so", "sj", "ta", "triggerauth",                                     # KEDA
    "es", "ss", "css",                                                   # External Secrets
    "pr", "prs", "tr", "trs",                                            # Tekton
    "xrd", "xrds", "comp",                                               # Crossplane
    "vm", "vms", "vmi", "vmis", "dv", "dvs",                             # KubeVirt / CDI
    "cm", "cs", "csr", "crd", "crds", "deploy", "ds", "ep", "ev", "hpa", "ing", "limits", "netpol",
    "no", "ns", "pc", "pdb", "po", "psp", "pv", "pvc", "quota", "rc", "rs", "sa", "sc", "sts", "svc",
}


def _crd(name: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "crds" / name).read_text())  # type: ignore[no-any-return]


def _schema(name: str) -> dict[str, Any]:
    return _crd(name)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def _fields(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sub in (schema.get("properties") or {}).items():
        yield f"{path}.{name}", sub
        yield from _fields(sub, f"{path}.{name}")
    if "items" in schema:
        yield from _fields(schema["items"], f"{path}[]")


@pytest.mark.parametrize("name", CRDS)
def test_every_field_is_described(name: str) -> None:
    schema = _schema(name)
    assert len(schema.get("description", "")) > 40
    fields = list(_fields(schema))
    assert len(fields) > 20
    missing = [path for path, sub in fields if not str(sub.get("description", "")).strip()]
    assert missing == []


def _rules(schema: dict[str, Any], value: Any, path: str = "") -> Iterator[tuple[str, str, str, Any]]:
    """(path, rule, message, self) for every x-kubernetes-validations rule that applies to `value`."""
    for rule in schema.get("x-kubernetes-validations", []):
        yield path, rule["rule"], rule["message"], value
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                yield from _rules(sub, value[key], f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            yield from _rules(schema["items"], item, f"{path}[{i}]")


def _violations(name: str, obj: dict[str, Any]) -> list[str]:
    env = celpy.Environment()
    failed = []
    for path, rule, message, value in _rules(_schema(name), obj):
        program = env.program(env.compile(rule))
        if not bool(program.evaluate({"self": celpy.json_to_cel(value)})):
            failed.append(f"{path}: {message}")
    return failed


def _example_policy() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((REPO / "examples" / "driftpolicy.yaml").read_text()) if d]
    return next(d for d in docs if d["kind"] == "DriftPolicy")


def test_cel_rules_accept_the_example_policy() -> None:
    policy = _example_policy()
    assert list(_rules(_schema("driftpolicy.yaml"), policy)), "the example exercises no rule"
    assert _violations("driftpolicy.yaml", policy) == []


@pytest.mark.parametrize(("field", "value", "message"), [
    ("ignoreDifferences", [{"group": "apps", "kind": "Deployment"}],
     ".spec.ignoreDifferences[0]: an ignore rule needs jsonPointers, jqPathExpressions or managedFieldsManagers"),
    ("ignoreDifferences", [{"name": "web", "jsonPointers": ["/spec/replicas"]}],
     ".spec.ignoreDifferences[0]: an ignore rule that names an object needs its kind too"),
    ("target", {"includeKinds": ["Deployment", "Secret"], "excludeKinds": ["Secret"]},
     ".spec.target: a kind cannot be both in includeKinds and in excludeKinds"),
])
def test_cel_rules_refuse_invalid_combinations(field: str, value: Any, message: str) -> None:
    policy = copy.deepcopy(_example_policy())
    policy["spec"][field] = value
    assert _violations("driftpolicy.yaml", policy) == [message]


def test_cel_rules_allow_the_valid_neighbours() -> None:
    policy = copy.deepcopy(_example_policy())
    policy["spec"]["ignoreDifferences"] = [{"kind": "Deployment", "name": "web", "jsonPointers": ["/spec/replicas"]},
                                           {"managedFieldsManagers": ["kube-controller-manager"]}]
    policy["spec"]["target"] = {"includeKinds": ["Deployment"], "excludeKinds": ["Secret"]}
    assert _violations("driftpolicy.yaml", policy) == []


def test_short_names_shadow_no_popular_kind() -> None:
    for name in CRDS:
        names = _crd(name)["spec"]["names"]
        assert names["shortNames"]
        assert not set(names["shortNames"]) & TAKEN_SHORT_NAMES, names["shortNames"]


def _report(policy: str, drift: ResourceDrift, state: str) -> dict[str, Any]:
    return {"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftReport",
            "metadata": {"name": report_name(PolicyRef("platform", policy), drift.id), "namespace": "platform"},
            "spec": report_spec(PolicyRef("platform", policy), drift, "9f1c2ab" * 5 + "12345", "2026-01-20T08:03:11Z"),
            "status": {"state": state, "lastSeen": "2026-01-21T08:03:11Z"}}


def test_get_driftreports_fits_a_terminal(tmp_path: Path) -> None:
    cluster = EmulatorServer().start()
    try:
        for name in CRDS:
            cluster.register_crd_file(REPO / "crds" / name)
        cluster.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "platform"}})
        image = Change("spec.template.spec.containers[name=checkout].image", "shop/checkout:2.4.1",
                       "shop/checkout:2.4.2-hotfix", Category.VERSION_CHANGE, Severity.HIGH, "kubectl-set")
        drifts = [
            ResourceDrift(ResourceRef("apps/v1", "Deployment", "shop-production", "checkout-service"),
                          ResourceKey("apps", "Deployment", "shop-production", "checkout-service"),
                          DriftState.DRIFTED, Severity.HIGH, 80, [image]),
            ResourceDrift(ResourceRef("v1", "ServiceAccount", "shop-production", "payments-worker"),
                          ResourceKey("", "ServiceAccount", "shop-production", "payments-worker"),
                          DriftState.MISSING, Severity.HIGH, 75, []),
        ]
        for drift, state in zip(drifts, ("Active", "Resolved"), strict=True):
            cluster.seed(_report("shop-prod", drift, state))
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")

        narrow = kubectl(kubeconfig, "get", "driftreports", "-A")
        assert narrow.returncode == 0, narrow.stderr
        lines = narrow.stdout.splitlines()
        assert lines[0].split() == ["NAMESPACE", "NAME", "SEVERITY", "SCORE", "STATE", "FIRST", "SEEN"]
        # Beyond NAMESPACE and NAME (whose width the report names decide), the columns take < 45 characters.
        after_name = lines[0].index("SEVERITY")
        assert len(lines) == 3 and max(len(line) - after_name for line in lines) < 45, narrow.stdout
        assert "Active" in narrow.stdout and "Resolved" in narrow.stdout

        wide = kubectl(kubeconfig, "get", "driftreports", "-A", "-o", "wide")
        assert wide.returncode == 0, wide.stderr
        header = wide.stdout.splitlines()[0]
        for column in ("POLICY", "KIND", "RESOURCE NAMESPACE", "RESOURCE NAME"):
            assert column in header
        assert "checkout-service" in wide.stdout and "ServiceAccount" in wide.stdout

        policies = kubectl(kubeconfig, "get", "drep", "-n", "platform")
        assert policies.returncode == 0 and "checkout-service" in policies.stdout, policies.stderr
    finally:
        cluster.stop()
