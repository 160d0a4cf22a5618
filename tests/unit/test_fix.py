"""The proposed fix (publish/fix.py): what would put an object back to Git, and nothing else."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from tests.support.objects import deployment, managed, scan, with_managed

from kubedrift.model import DiffSettings, IgnoreRule, KubeObject
from kubedrift.publish.fix import locate, propose_fixes, render_fixes, report_command

ROOT = Path(__file__).resolve().parents[2]


def _fixed(desired: Any, live: Any, settings: DiffSettings | None = None) -> Any:
    settings = settings or DiffSettings()
    d = desired if isinstance(desired, list) else [desired]
    lv = live if isinstance(live, list) else [live]
    result = scan(d, lv, settings)
    propose_fixes(result, [KubeObject(b, "apps/web.yaml") for b in d], [KubeObject(b, "live") for b in lv], settings)
    return result


def _hand_added_env(live: dict[str, Any]) -> dict[str, Any]:
    live = copy.deepcopy(live)
    containers = live["spec"]["template"]["spec"]["containers"]
    containers[0]["env"].append({"name": "DEBUG", "value": "1"})
    return with_managed(live, managed("kubectl-edit", {"f:spec": {"f:template": {"f:spec": {"f:containers": {
        'k:{"name":"web"}': {"f:env": {'k:{"name":"DEBUG"}': {".": {}, "f:name": {}, "f:value": {}}}}}}}}}))


def test_apply_body_is_gits_declared_fields_without_server_fields() -> None:
    desired = deployment(replicas=2)
    live = copy.deepcopy(desired)
    live["spec"]["replicas"] = 5
    live["metadata"].update(uid="u-1", resourceVersion="9", creationTimestamp="2026-01-01T00:00:00Z",
                            annotations={"deployment.kubernetes.io/revision": "3"})
    live["status"] = {"replicas": 5}
    fix = _fixed(desired, live).drifts[0].fix
    assert fix is not None and fix.action == "apply"
    assert fix.apply["spec"]["replicas"] == 2
    assert fix.apply["spec"]["template"] == desired["spec"]["template"]
    assert fix.apply["metadata"] == {"name": "web", "namespace": "shop", "labels": {"app": "web"}}
    assert "status" not in fix.apply and not fix.patch and not fix.remove


def test_ignored_fields_and_autoscaled_replicas_stay_out_of_the_body() -> None:
    """A fix never fights what the policy tolerates: an HPA's replicas, an ignored annotation."""
    desired = deployment(replicas=2)
    desired["metadata"]["annotations"] = {"team": "a", "note": "x"}
    live = copy.deepcopy(desired)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/example/web:6.6.6"
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                    "minReplicas": 2, "maxReplicas": 9}}
    settings = DiffSettings(ignore_rules=[IgnoreRule(kind="Deployment", json_pointers=["/metadata/annotations/note"])])
    result = _fixed(desired, [live, hpa], settings)
    fix = result.drifts[0].fix
    assert fix is not None
    assert "replicas" not in fix.apply["spec"]
    assert fix.apply["metadata"]["annotations"] == {"team": "a"}
    assert fix.apply["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/example/web:1.0.0"
    assert desired["spec"]["replicas"] == 2 and "note" in desired["metadata"]["annotations"]  # inputs untouched


def test_hand_added_env_var_is_removed_by_a_guarded_patch() -> None:
    desired = deployment()
    live = _hand_added_env(desired)
    fix = _fixed(desired, live).drifts[0].fix
    assert fix is not None
    assert fix.remove == ("spec.template.spec.containers[name=web].env[name=DEBUG]",)
    patched = jsonpatch.apply_patch(live, list(fix.patch))
    assert patched["spec"]["template"]["spec"]["containers"][0]["env"] == desired["spec"]["template"]["spec"][
        "containers"][0]["env"]
    assert not scan(desired, patched).drifts  # patch, then the apply body (already equal here): clean


def test_removal_patch_refuses_a_list_that_changed_meanwhile() -> None:
    """The test of the item's key makes the patch fail instead of removing someone else's entry."""
    desired = deployment()
    live = _hand_added_env(desired)
    fix = _fixed(desired, live).drifts[0].fix
    assert fix is not None
    moved = copy.deepcopy(live)
    env = moved["spec"]["template"]["spec"]["containers"][0]["env"]
    env.insert(1, {"name": "OTHER", "value": "keep"})
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(moved, list(fix.patch))


def test_locate_needs_an_exact_unique_match() -> None:
    live = {"spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 8080}],
                     "a": {"b.c": 1}, "a.b": {"c": 2}}}
    assert locate(live, "spec.ports[port=8080,protocol=TCP]") is not None
    tokens, tests = locate(live, "spec.ports[port=8080,protocol=TCP]") or ([], [])
    assert tokens == ["spec", "ports", 1]
    assert {"op": "test", "path": "/spec/ports/1/port", "value": 8080} in tests
    assert locate(live, 'spec.a["b.c"]') == (["spec", "a", "b.c"], [])
    assert locate(live, 'spec["a.b"].c') == (["spec", "a.b", "c"], [])
    assert locate(live, "spec.ports[port=9090,protocol=TCP]") is None


def test_missing_object_fix_is_its_manifest() -> None:
    desired = deployment()
    result = _fixed(desired, [])
    fix = result.drifts[0].fix
    assert fix is not None and fix.action == "create"
    assert fix.apply["kind"] == "Deployment" and fix.apply["spec"] == desired["spec"]


def test_secret_fix_names_keys_never_values() -> None:
    password, token = "hunter2-very-secret", "tok-ABC-123-xyz"
    desired = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"},
               "type": "Opaque", "stringData": {"password": password}}
    live = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "shop"}, "type": "Opaque",
            "data": {"password": base64.b64encode(b"changed-by-hand").decode(),
                     "token": base64.b64encode(token.encode()).decode()}}
    result = _fixed(desired, live)
    fix = result.drifts[0].fix
    assert fix is not None
    assert fix.secret_keys == ("password",)
    assert "data" not in fix.apply and "stringData" not in fix.apply
    assert fix.remove == ("data.token",)
    assert fix.patch == ({"op": "remove", "path": "/data/token"},)
    shown = json.dumps(fix.to_json()) + render_fixes(result) + report_command(fix, result.drifts[0].resource, "r", "ns")
    for value in (password, token, base64.b64encode(token.encode()).decode(), "changed-by-hand",
                  base64.b64encode(b"changed-by-hand").decode()):
        assert value not in shown
    assert "values" in " ".join(fix.notes) and "apps/web.yaml" in " ".join(fix.notes)


def test_report_command_reads_the_fix_back_from_the_report() -> None:
    desired = deployment()
    result = _fixed(desired, _hand_added_env(desired))
    drift = result.drifts[0]
    assert drift.fix is not None
    line = report_command(drift.fix, drift.resource, "prod-deployment-shop-web-1234abcd", "platform")
    assert "\n" not in line
    assert line.startswith("kubectl patch deployment.v1.apps web -n shop --type=json -p \"$(kubectl get driftreport "
                           "prod-deployment-shop-web-1234abcd -n platform -o jsonpath='{.spec.fix.patch}')\"")
    assert line.endswith("-o jsonpath='{.spec.fix.apply}' | kubectl apply --server-side --field-manager=kubedrift "
                         "--force-conflicts -f -")


def test_scan_output_fix_pipes_into_kubectl_apply(tmp_path: Path) -> None:
    """`--output fix` is a YAML stream kubectl can apply: every document an object Git declares."""
    out = subprocess.run(
        [sys.executable, "-m", "kubedrift", "scan", "--manifests", str(ROOT / "examples/gitops/overlays/production"),
         "--live", str(ROOT / "examples/live/cluster-snapshot.yaml"), "--namespace", "shop", "--output", "fix"],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stderr
    documents = [d for d in yaml.safe_load_all(out.stdout) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in documents}
    assert ("Deployment", "web") in kinds and ("ServiceAccount", "web") in kinds
    assert not any(d["kind"] == "Secret" for d in documents)  # Secret values come from Git, never from kubedrift
    assert "# remove (not in Git): spec.template.spec.containers[name=web].env[name=JAVA_TOOL_OPTIONS]" in out.stdout
    web = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "web")
    assert web["spec"]["replicas"] == 3
    assert not any("status" in d or "managedFields" in d["metadata"] or "uid" in d["metadata"] for d in documents)


def test_decimal_floats_are_shown_as_written() -> None:
    """`cpu: 0.1` from a manifest (a decimal-text float) reaches the fix as a plain number YAML can print."""
    from kubedrift.source.documents import parse_yaml

    [manifest] = [d for d in parse_yaml(yaml.safe_dump(deployment()).replace("cpu: 500m", "cpu: 0.1"))
                  if d]
    live = copy.deepcopy(deployment())
    live["spec"]["replicas"] = 9
    result = _fixed(manifest, live)
    fix = result.drifts[0].fix
    assert fix is not None
    assert fix.apply["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == 0.1
    assert "cpu: 0.1" in render_fixes(result)


def test_cluster_scoped_custom_kind_written_with_a_namespace_gets_its_fix() -> None:
    desired = {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer",
               "metadata": {"name": "letsencrypt", "namespace": "default"},
               "spec": {"acme": {"email": "ops@example.com"}}}
    live = copy.deepcopy(desired)
    del live["metadata"]["namespace"]
    live["spec"]["acme"]["email"] = "someone@example.com"
    result = _fixed(desired, live)
    [found] = result.drifts
    assert found.key.namespace == "" and found.fix is not None
    assert "namespace" not in found.fix.apply["metadata"]
    assert found.fix.apply["spec"]["acme"]["email"] == "ops@example.com"
