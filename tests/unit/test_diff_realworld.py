"""Shapes real repos, API servers and GitOps tools produce (issue 7): no false alarm, no missed drift.

Each case starts from a captured object (../shared/corpus/live-objects, SOURCES.md) or a peer's public
test data where one applies, and cites its evidence. Peers' verdicts are recorded as
`peer verdict:`; where kubedrift disagrees on purpose, the test says why.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.corpus import LAST_APPLIED, last_applied, load_one
from tests.support.objects import changes, managed, scan, with_managed

from kubedrift.diff import compare_objects
from kubedrift.model import Category, DiffSettings, KubeObject, Severity
from kubedrift.source.manifests import load_manifests
from kubedrift.source.snapshot import load_live_snapshot

GE = "argoproj__gitops-engine__pkg__diff__testdata__"
K9S = "derailed__k9s__internal__render__testdata__"
NGINX = "spec.template.spec.containers[name=nginx]"


def p02() -> tuple[dict[str, Any], dict[str, Any]]:
    """SOURCES.md P02: nginx Deployment applied by Argo CD server-side (manager argocd-controller,
    operation Apply) and read back with server defaults: a pair that compares clean."""
    return load_one(GE + "smd-deploy-config.yaml"), load_one(GE + "smd-deploy-live.yaml")


def nginx(body: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = body["spec"]["template"]["spec"]["containers"][0]
    return container


def pod_spec(body: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = body["spec"]["template"]["spec"]
    return spec


def found(desired: Any, live: Any, settings: DiffSettings | None = None) -> dict[str, tuple[Any, Any, Category]]:
    return {p: (c.desired, c.live, c.category) for p, c in changes(desired, live, settings).items()}


def manifests_from(tmp_path: Path, name: str, text: str) -> list[KubeObject]:
    path = tmp_path / name
    path.write_text(text)
    objects, errors = load_manifests([str(path)])
    assert errors == []
    return objects


# ---------------------------------------------------------------------------------------------
# 1. YAML float quantities are read from their decimal text


def float_cpu_manifest(cpu: str) -> str:
    """P02's Git manifest with resources written as a YAML author would: `cpu: 0.1`, unquoted."""
    config, _ = p02()
    nginx(config)["resources"] = {"requests": {"cpu": "CPU", "memory": "64Mi"}, "limits": {"cpu": "CPU"}}
    text: str = yaml.safe_dump(config)
    return text.replace("cpu: CPU", f"cpu: {cpu}")


@pytest.mark.parametrize(("written", "live"), [("0.1", "100m"), ("0.2", "200m"), ("0.3", "300m"),
                                               ("2.2", "2200m"), ("0.7", "700m"), ("1.5", "1500m")])
def test_yaml_float_cpu_equals_the_servers_millicores(tmp_path: Path, written: str, live: str) -> None:
    # The API server reads `cpu: 0.1` from the number's text (resource.Quantity.UnmarshalJSON gets the
    # JSON token "0.1" from kubectl) and stores 100m. Through a binary float it would be
    # Decimal(0.1) = 0.1000000000000000055511151231257827..., never equal to 0.1.
    desired = manifests_from(tmp_path, "web.yaml", float_cpu_manifest(written))
    _, live_obj = p02()
    nginx(live_obj)["resources"] = {"requests": {"cpu": live, "memory": "64Mi"}, "limits": {"cpu": live}}
    result = compare_objects(desired, [KubeObject(live_obj)], DiffSettings())
    assert result.drifts == []


def test_yaml_float_cpu_still_finds_a_real_difference(tmp_path: Path) -> None:
    desired = manifests_from(tmp_path, "web.yaml", float_cpu_manifest("0.1"))
    _, live_obj = p02()
    nginx(live_obj)["resources"] = {"requests": {"cpu": "110m", "memory": "64Mi"}, "limits": {"cpu": "100m"}}
    result = compare_objects(desired, [KubeObject(live_obj)], DiffSettings())
    assert [(c.path, c.desired, c.live, c.category) for d in result.drifts for c in d.changes] == [
        (f"{NGINX}.resources.requests.cpu", 0.1, "110m", Category.RESOURCE_CHANGE)
    ]
    # Reports still carry a plain JSON number.
    assert json.loads(json.dumps(result.to_json()))["drifts"][0]["changes"][0]["desired"] == 0.1


def test_json_manifest_float_quantity(tmp_path: Path) -> None:
    manifest = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "compute", "namespace": "default"},
                "spec": {"hard": {"requests.cpu": 0.3, "limits.cpu": 2.2}}}
    desired = manifests_from(tmp_path, "quota.json", json.dumps(manifest))
    live = copy.deepcopy(manifest)
    live["spec"]["hard"] = {"requests.cpu": "300m", "limits.cpu": "2200m"}  # as the server prints them
    assert compare_objects(desired, [KubeObject(live)], DiffSettings()).drifts == []


def test_float_quantities_of_limit_ranges_and_hpa_targets(tmp_path: Path) -> None:
    text = """\
apiVersion: v1
kind: LimitRange
metadata: {name: defaults, namespace: default}
spec:
  limits:
    - type: Container
      default: {cpu: 0.3}
      defaultRequest: {cpu: 0.1}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: default}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 5
  metrics:
    - type: Pods
      pods:
        metric: {name: queue_depth}
        target: {type: AverageValue, averageValue: 0.1}
"""
    desired = manifests_from(tmp_path, "limits.yaml", text)
    live_range = copy.deepcopy(desired[0].body)
    live_range["spec"]["limits"][0].update(default={"cpu": "300m"}, defaultRequest={"cpu": "100m"})
    live_hpa = copy.deepcopy(desired[1].body)
    live_hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"] = "100m"
    result = compare_objects(desired, [KubeObject(live_range), KubeObject(live_hpa)], DiffSettings())
    assert result.drifts == [] and result.resources == 2


def test_a_float_elsewhere_is_no_quantity(tmp_path: Path) -> None:
    # Only quantity places compare by amount: an env value "0.1" is not the string "100m".
    _, live = p02()
    desired = copy.deepcopy(live)
    nginx(desired)["env"] = [{"name": "RATIO", "value": "0.1"}]
    nginx(live)["env"] = [{"name": "RATIO", "value": "100m"}]
    assert list(found(desired, live)) == [f"{NGINX}.env[name=RATIO].value"]


# ---------------------------------------------------------------------------------------------
# 2. Zero values the API server leaves out


def test_zero_values_of_plain_fields_come_back_absent() -> None:
    # Git writes the zero value; the server's JSON encoder drops `omitempty` non-pointer fields
    # (kubernetes/api core/v1/types.go: EnvVar.Value string :2663, VolumeMount.ReadOnly bool :2536,
    # PodSpec.HostNetwork bool :4465, Container.Stdin/TTY bool :3314/:3327, Probe.InitialDelaySeconds
    # int32 :2942, Toleration.Value string :4327).
    desired, live = p02()
    container = nginx(desired)
    container.update(stdin=False, tty=False, workingDir="")
    container["env"] = [{"name": "EMPTY", "value": ""}]
    container["volumeMounts"] = [{"name": "cache", "mountPath": "/cache", "readOnly": False, "subPath": ""}]
    container["livenessProbe"]["initialDelaySeconds"] = 0
    pod_spec(desired).update(hostNetwork=False, hostPID=False, volumes=[{"name": "cache", "emptyDir": {}}],
                             tolerations=[{"key": "dedicated", "operator": "Exists", "value": ""}])
    live_container = nginx(live)
    live_container["env"] = [{"name": "EMPTY"}]
    live_container["volumeMounts"] = [{"name": "cache", "mountPath": "/cache"}]
    del live_container["livenessProbe"]["initialDelaySeconds"]
    pod_spec(live).update(volumes=[{"name": "cache", "emptyDir": {}}],
                          tolerations=[{"key": "dedicated", "operator": "Exists"}])
    assert found(desired, live) == {}


def test_host_network_true_in_git_absent_live_is_still_critical() -> None:
    desired, live = p02()
    pod_spec(desired)["hostNetwork"] = True
    drift = scan(desired, live).drifts[0]
    assert [(c.path, c.desired, c.live, c.severity) for c in drift.changes] == [
        ("spec.template.spec.hostNetwork", True, None, Severity.CRITICAL)
    ]


def test_pointer_fields_keep_their_false() -> None:
    # `*bool` fields are serialized when false: PodSpec.AutomountServiceAccountToken,
    # CSIVolumeSource.ReadOnly (core/v1/types.go). Absent live means the object really lacks it.
    desired, live = p02()
    pod_spec(desired).update(automountServiceAccountToken=False,
                             volumes=[{"name": "certs", "csi": {"driver": "csi.example.com", "readOnly": False}}])
    pod_spec(live)["volumes"] = [{"name": "certs", "csi": {"driver": "csi.example.com"}}]
    got = found(desired, live)
    assert set(got) == {"spec.template.spec.automountServiceAccountToken",
                        "spec.template.spec.volumes[name=certs].csi.readOnly"}
    assert got["spec.template.spec.automountServiceAccountToken"][2] is Category.SECURITY_CHANGE


def test_custom_resources_keep_their_zero_values() -> None:
    # A CRD's objects are stored as JSON as sent: a `false` stays. Absent live is a difference.
    desired = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
               "metadata": {"name": "web", "namespace": "shop"}, "spec": {"paused": False, "replicas": 2}}
    live = copy.deepcopy(desired)
    del live["spec"]["paused"]
    assert list(found(desired, live)) == ["spec.paused"]


# ---------------------------------------------------------------------------------------------
# 3. GitOps tools' bookkeeping and server-defaulted values are no evidence of removal from Git

FLUX_LABELS = {"kustomize.toolkit.fluxcd.io/name": "apps", "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}


def flux_applied(live: dict[str, Any], labels: dict[str, str], fields: dict[str, Any]) -> dict[str, Any]:
    """The live object as kustomize-controller leaves it: its labels added, applied server-side
    (manager kustomize-controller, operation Apply; fluxcd/kustomize-controller docs)."""
    live = copy.deepcopy(live)
    live["metadata"]["managedFields"] = [
        e for e in live["metadata"]["managedFields"] if e["manager"] != "argocd-controller"
    ]
    live["metadata"]["labels"].update(labels)
    label_fields = {f"f:{k}": {} for k in live["metadata"]["labels"]}
    tree = {"f:metadata": {"f:labels": label_fields}, **fields}
    return with_managed(live, managed("kustomize-controller", tree, operation="Apply",
                                      time="2026-01-10T08:00:00Z"))


SPEC_FIELDS = {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {
    'k:{"name":"nginx"}': {".": {}, "f:name": {}, "f:image": {}, "f:ports": {
        'k:{"containerPort":80,"protocol":"TCP"}': {".": {}, "f:containerPort": {}, "f:protocol": {}}}}}}}}}


def test_flux_labels_are_not_removed_from_git() -> None:
    # Every object Flux applies carries kustomize.toolkit.fluxcd.io/name and /namespace, owned by its
    # Apply entry though Git never declared them. peer verdict: Flux reports such objects Unchanged.
    # The applier also owns `protocol: TCP` of a port Git wrote without protocol: the server's default.
    desired, live = p02()
    assert found(desired, flux_applied(live, FLUX_LABELS, SPEC_FIELDS)) == {}


def test_helm_controller_and_argo_cd_bookkeeping() -> None:
    desired, live = p02()
    labels = {"helm.toolkit.fluxcd.io/name": "nginx", "helm.toolkit.fluxcd.io/namespace": "apps",
              "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": "nginx"}
    assert found(desired, flux_applied(live, labels, SPEC_FIELDS)) == {}
    # Argo CD annotation tracking (argocd.argoproj.io/tracking-id, argo-cd docs user-guide/resource_tracking).
    live = copy.deepcopy(live)
    live["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = "nginx:apps/Deployment:default/nginx-deployment"
    live["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]["f:annotations"] = {
        "f:argocd.argoproj.io/tracking-id": {}}
    assert found(desired, live) == {}


def test_a_label_flux_applied_before_and_git_dropped_is_drift() -> None:
    # The same ownership of a label that is not bookkeeping: Git removed `team`, Flux's next apply
    # removes it from the object. peer verdict: Flux plans the removal (ssa TestDiff_Removals).
    desired, live = p02()
    got = found(desired, flux_applied(live, {**FLUX_LABELS, "team": "web"}, SPEC_FIELDS))
    assert got == {"metadata.labels.team": (None, "web", Category.LABEL_CHANGE)}


def test_a_port_protocol_other_than_the_default_is_still_compared() -> None:
    desired, live = p02()
    nginx(live)["ports"] = [{"containerPort": 80, "protocol": "UDP"}]
    assert set(found(desired, live)) == {f"{NGINX}.ports[containerPort=80,protocol=TCP]"}


# ---------------------------------------------------------------------------------------------
# 6. Controller-owned keys of a service-account token Secret

TOKEN_SECRET = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                "metadata": {"name": "build-robot-token", "namespace": "ci",
                             "annotations": {"kubernetes.io/service-account.name": "build-robot"}},
                "data": {}}


def token_secret_live() -> dict[str, Any]:
    # The token controller fills token, ca.crt and namespace (core/v1/types.go:8342-8349) and the uid.
    live = copy.deepcopy(TOKEN_SECRET)
    live["metadata"]["annotations"]["kubernetes.io/service-account.uid"] = "b1e2c3d4-0000-4000-8000-000000000001"
    live["data"] = {"token": "ZXlKaGJHY2lPaUpTVXpJMU5pSXNJbXRwWkNJNklpSjkuZmFrZQ==",
                    "ca.crt": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t", "namespace": "Y2k="}
    return live


def test_service_account_token_secret_declared_empty_compares_clean() -> None:
    assert found(TOKEN_SECRET, token_secret_live()) == {}
    no_data = {k: v for k, v in TOKEN_SECRET.items() if k != "data"}
    assert found(no_data, token_secret_live()) == {}


def test_service_account_token_secret_extra_keys_and_other_secrets_still_drift() -> None:
    live = token_secret_live()
    live["data"]["extra"] = "c2VjcmV0"
    got = found(TOKEN_SECRET, live)
    assert list(got) == ["data.extra"] and got["data.extra"][1].startswith(("hmac:", "sha256:"))
    # Any other Secret type: every live key Git lacks is drift (SPEC §2 whole maps).
    opaque = {**copy.deepcopy(TOKEN_SECRET), "type": "Opaque"}
    assert set(found(opaque, {**token_secret_live(), "type": "Opaque"})) == {
        'data["ca.crt"]', "data.namespace", "data.token"}


# ---------------------------------------------------------------------------------------------
# 8. A person's server-side apply and kubectl scale are hand edits


def test_kubectl_server_side_apply_by_a_person_is_reported() -> None:
    # `kubectl apply --server-side` writes as manager "kubectl", operation Apply (kubectl's default
    # --field-manager); SPEC §2 lists it among the hand-editing managers.
    desired, live = p02()
    nginx(live)["env"] = [{"name": "DEBUG", "value": "1"}]
    tree = {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"nginx"}': {
        "f:env": {'k:{"name":"DEBUG"}': {".": {}, "f:name": {}, "f:value": {}}}}}}}}}
    live = with_managed(live, managed("kubectl", tree, operation="Apply", time="2026-02-01T09:00:00Z"))
    change = changes(desired, live)[f"{NGINX}.env[name=DEBUG]"]
    assert (change.desired, change.live, change.changed_by, change.changed_at) == (
        None, {"name": "DEBUG", "value": "1"}, "kubectl", "2026-02-01T09:00:00Z")


def test_kubectl_scale_is_attributed() -> None:
    # `kubectl scale` updates through the scale subresource as manager "kubectl".
    desired, live = p02()
    live["spec"]["replicas"] = 6
    live = with_managed(live, managed("kubectl", {"f:spec": {"f:replicas": {}}}, subresource="scale",
                                      time="2026-02-02T10:00:00Z"))
    change = changes(desired, live)["spec.replicas"]
    assert (change.live, change.changed_by, change.severity) == (6, "kubectl", Severity.HIGH)


def test_a_whole_container_added_by_hand_is_a_version_change() -> None:
    desired, live = p02()
    sidecar = {"name": "debug", "image": "busybox:1.36", "command": ["sleep", "infinity"],
               "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}]}
    pod_spec(live)["containers"].append(sidecar)
    tree = {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"debug"}': {
        ".": {}, "f:name": {}, "f:image": {}, "f:command": {}, "f:env": {}}}}}}}
    live = with_managed(live, managed("kubectl-edit", tree))
    change = changes(desired, live)["spec.template.spec.containers[name=debug]"]
    assert (change.desired, change.category, change.severity) == (None, Category.VERSION_CHANGE, Severity.HIGH)


def test_a_privileged_container_added_by_hand_stays_critical() -> None:
    desired, live = p02()
    pod_spec(live)["containers"].append({"name": "debug", "image": "busybox", "securityContext": {"privileged": True}})
    tree = {"f:spec": {"f:template": {"f:spec": {"f:containers": {'k:{"name":"debug"}': {
        ".": {}, "f:name": {}, "f:image": {}, "f:securityContext": {"f:privileged": {}}}}}}}}
    change = changes(desired, with_managed(live, managed("kubectl", tree, operation="Apply")))[
        "spec.template.spec.containers[name=debug]"]
    assert change.severity is Severity.CRITICAL


# ---------------------------------------------------------------------------------------------
# 9. Removed from Git under client-side apply: the last-applied-configuration tells


def test_gitops_engine_three_way_diff_annotation_removed() -> None:
    # gitops-engine pkg/diff/diff_test.go TestThreeWayDiff: config and live carry annotation foo,
    # live has a last-applied-configuration; foo removed from config. peer verdict: Modified (step 4);
    # without the last-applied annotation: not Modified (step 5) - and so here.
    config = load_one(GE + "spinnaker-sa-config.json")
    live = load_one(GE + "spinnaker-sa-live.json")
    config["metadata"]["namespace"] = live["metadata"]["namespace"]
    config["metadata"]["annotations"] = {"foo": "bar"}
    live["metadata"].setdefault("annotations", {})["foo"] = "bar"
    live["metadata"]["annotations"][LAST_APPLIED] = json.dumps(config)
    assert found(config, live) == {}
    without_foo = copy.deepcopy(config)
    del without_foo["metadata"]["annotations"]
    assert found(without_foo, live) == {"metadata.annotations.foo": (None, "bar", Category.ANNOTATION_CHANGE)}
    del live["metadata"]["annotations"][LAST_APPLIED]
    assert found(without_foo, live) == {}


def test_gitops_engine_three_way_diff_example2_with_difference() -> None:
    # gitops-engine TestThreeWayDiffExample2WithDifference on elasticsearch-config/live.json (a
    # StatefulSet applied client-side: live carries last-applied): a label added, one changed, one
    # removed from config. peer verdict: 1 missing (foo), 1 extra (release), 1 changed (chart).
    config = load_one(GE + "elasticsearch-config.json")
    live = load_one(GE + "elasticsearch-live.json")
    config["metadata"]["namespace"] = live["metadata"]["namespace"]
    labels = config["metadata"]["labels"]
    labels.update(foo="bar", chart="elasticsearch-1.7.1")
    del labels["release"]
    assert found(config, live) == {
        "metadata.labels.foo": ("bar", None, Category.LABEL_CHANGE),
        "metadata.labels.chart": ("elasticsearch-1.7.1", "elasticsearch-1.7.0", Category.LABEL_CHANGE),
        "metadata.labels.release": (None, "elasticsearch4", Category.LABEL_CHANGE),
    }


def test_a_spec_field_removed_from_git_under_client_side_apply() -> None:
    # k9s render testdata dp.json (SOURCES.md L07): applied with `kubectl apply`, the manifest is in
    # last-applied. Git drops an env var and a volume mount that are still live: the next apply prunes them.
    live = load_one(K9S + "dp.json")
    git = last_applied(live)
    git["metadata"]["namespace"] = live["metadata"]["namespace"]
    container = git["spec"]["template"]["spec"]["containers"][0]
    name = container["name"]
    removed = container["ports"].pop()
    got = found(git, live)
    path = f"spec.template.spec.containers[name={name}].ports[containerPort={removed['containerPort']},protocol=TCP]"
    assert list(got) == [path]
    assert got[path][0] is None and got[path][1]["containerPort"] == removed["containerPort"]


def test_argo_cd_instance_label_in_last_applied_is_not_removed_from_git() -> None:
    # Argo CD label tracking (client-side sync) adds app.kubernetes.io/instance to what it applies,
    # so it sits in last-applied (gitops-engine TestThreeWayDiffExample1, demoLive) yet not in Git.
    live = load_one(K9S + "cm.json")
    git = last_applied(live)
    git["metadata"]["namespace"] = live["metadata"]["namespace"]
    applied = copy.deepcopy(git)
    applied["metadata"].setdefault("labels", {})["app.kubernetes.io/instance"] = "demo"
    applied["metadata"].setdefault("annotations", {})["argocd.argoproj.io/tracking-id"] = "demo:/ConfigMap:x/y"
    live = copy.deepcopy(live)
    live["metadata"].setdefault("labels", {})["app.kubernetes.io/instance"] = "demo"
    live["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = "demo:/ConfigMap:x/y"
    live["metadata"]["annotations"][LAST_APPLIED] = json.dumps(applied)
    assert found(git, live) == {}


def test_last_applied_of_a_secret_never_shows_a_value() -> None:
    # k9s sec.json (L10): the last-applied of a Secret embeds its base64 data. A key removed from Git
    # is found by the whole-map rule and shown as a digest; nothing is read from the annotation.
    live = load_one(K9S + "sec.json")
    git = last_applied(live)
    git["metadata"]["namespace"] = live["metadata"]["namespace"]
    removed = sorted(git["data"])[0]
    del git["data"][removed]
    result = scan(git, live)
    text = json.dumps(result.to_json())
    assert all(value not in text for value in live["data"].values())
    assert [c.path for d in result.drifts for c in d.changes] == [f"data.{removed}"]
    assert all(str(c.live).startswith(("hmac:", "sha256:")) for d in result.drifts for c in d.changes)


# ---------------------------------------------------------------------------------------------
# 7. Custom resources: lists matched by the CRD's x-kubernetes-list-map-keys

GATEWAY_CRD = {
    # The shape of Gateway API's gateways.gateway.networking.k8s.io CRD: spec.listeners is
    # `x-kubernetes-list-type: map` keyed by name.
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gateways.gateway.networking.k8s.io"},
    "spec": {"group": "gateway.networking.k8s.io", "scope": "Namespaced",
             "names": {"kind": "Gateway", "plural": "gateways"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": {"type": "object", "properties": {
                     "listeners": {"type": "array", "x-kubernetes-list-type": "map",
                                   "x-kubernetes-list-map-keys": ["name"],
                                   "items": {"type": "object", "properties": {
                                       "name": {"type": "string"}, "port": {"type": "integer"},
                                       "protocol": {"type": "string"}}}}}}}}}}]},
}


def gateway(listeners: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "public", "namespace": "edge"},
            "spec": {"gatewayClassName": "istio", "listeners": copy.deepcopy(listeners)}}


HTTP = {"name": "http", "port": 80, "protocol": "HTTP"}
HTTPS = {"name": "https", "port": 443, "protocol": "HTTPS"}


def test_crd_list_map_keys_match_items_by_key() -> None:
    desired, live = gateway([HTTP, HTTPS]), gateway([HTTPS, {**HTTP, "hostname": "example.com"}])
    # Without the CRD, the list compares whole and in order: a reordering is drift.
    assert list(found(desired, live)) == ["spec.listeners"]
    # With the CRD among the manifests (or in the snapshot): matched by name, the only-live field ignored.
    assert found([desired, GATEWAY_CRD], [live, GATEWAY_CRD]) == {}
    live["spec"]["listeners"][0]["port"] = 8443
    assert found([desired, GATEWAY_CRD], [live, GATEWAY_CRD]) == {
        "spec.listeners[name=https].port": (443, 8443, Category.CONFIGURATION_CHANGE)}


# ---------------------------------------------------------------------------------------------
# 5. The scope of kinds kubedrift does not know

CLUSTER_POLICY = """\
apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-labels
  namespace: kyverno
spec:
  validationFailureAction: Enforce
  rules:
    - name: check-team
      match: {any: [{resources: {kinds: [Pod]}}]}
      validate: {message: "label team is required", pattern: {metadata: {labels: {team: "?*"}}}}
"""


def test_a_cluster_scoped_custom_resource_is_found_without_namespace(tmp_path: Path) -> None:
    # Kyverno's ClusterPolicy is cluster-scoped: `kubectl get clusterpolicy -o yaml` prints no namespace.
    # The loader cannot know the kind and gives it a namespace; the live objects tell the scope.
    desired = manifests_from(tmp_path, "policy.yaml", CLUSTER_POLICY)
    live = copy.deepcopy(desired[0].body)
    del live["metadata"]["namespace"]
    (tmp_path / "live.yaml").write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [live]}))
    live_objects, errors = load_live_snapshot(str(tmp_path / "live.yaml"))
    assert errors == []
    assert compare_objects(desired, live_objects, DiffSettings()).drifts == []
    live["spec"]["validationFailureAction"] = "Audit"
    result = compare_objects(desired, [KubeObject(live)], DiffSettings())
    assert [(d.id, [c.path for c in d.changes]) for d in result.drifts] == [
        ("ClusterPolicy::require-labels", ["spec.validationFailureAction"])]


def test_a_crd_tells_the_scope_of_a_missing_custom_resource(tmp_path: Path) -> None:
    desired = manifests_from(tmp_path, "policy.yaml", CLUSTER_POLICY)
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "clusterpolicies.kyverno.io"},
           "spec": {"group": "kyverno.io", "scope": "Cluster", "names": {"kind": "ClusterPolicy"}, "versions": []}}
    result = compare_objects(desired, [KubeObject(crd)], DiffSettings())
    assert [(d.id, d.state.value) for d in result.drifts] == [("ClusterPolicy::require-labels", "missing")]


def test_gitops_engine_ignores_namespace_of_cluster_scoped_resources() -> None:
    # gitops-engine TestIgnoreNamespaceForClusterScopedResources: config Foo (foo.io/v1) has namespace
    # kube-system, live has none. peer verdict: not Modified.
    config = {"apiVersion": "foo.io/v1", "kind": "Foo", "metadata": {"name": "my-foo", "namespace": "kube-system"},
              "spec": {"foo": "bar"}}
    live = {"apiVersion": "foo.io/v1", "kind": "Foo",
            "metadata": {"creationTimestamp": "2018-07-17T09:17:05Z", "name": "my-foo", "resourceVersion": "10308211",
                         "uid": "2c3d5405-89a2-11e8-aff0-42010a8a0fc6"}, "spec": {"foo": "bar"}}
    result = scan(config, live)
    assert result.drifts == [] and result.resources == 1


# ---------------------------------------------------------------------------------------------
# 4. One kind in several API versions (scan --live converts HorizontalPodAutoscalers)


def hpa_v1() -> dict[str, Any]:
    """k9s render testdata hpa.json (SOURCES.md L12): an autoscaling/v1 HPA as the server prints it."""
    live = load_one(K9S + "hpa.json")
    return live


def as_v2(v1_live: dict[str, Any], cpu: int) -> dict[str, Any]:
    """The same object as `kubectl get hpa -o yaml` prints it today (autoscaling/v2): the cpu target in
    `metrics`, the v1 annotations gone (kubernetes pkg/apis/autoscaling/v1/conversion.go)."""
    live = copy.deepcopy(v1_live)
    live["apiVersion"] = "autoscaling/v2"
    spec = live["spec"]
    del spec["targetCPUUtilizationPercentage"]
    spec["metrics"] = [{"type": "Resource", "resource": {"name": "cpu", "target": {
        "type": "Utilization", "averageUtilization": cpu}}}]
    annotations = live["metadata"].get("annotations", {})
    for key in [k for k in annotations if k.startswith("autoscaling.alpha.kubernetes.io/")]:
        del annotations[key]
    return live


def test_hpa_applied_as_v1_read_as_v2() -> None:
    v1 = hpa_v1()
    git = last_applied(v1)
    git["metadata"]["namespace"] = v1["metadata"]["namespace"]
    cpu = git["spec"]["targetCPUUtilizationPercentage"]
    assert found(git, as_v2(v1, cpu)) == {}
    # A real change is still found, at the v2 path.
    assert found(git, as_v2(v1, cpu + 20)) == {
        "spec.metrics[name=cpu,type=Resource].resource.target.averageUtilization": (
            cpu, cpu + 20, Category.CONFIGURATION_CHANGE)}


def test_hpa_written_as_v2_read_as_v1() -> None:
    v1 = hpa_v1()
    cpu = v1["spec"]["targetCPUUtilizationPercentage"]
    git = as_v2(v1, cpu)
    for server_field in ("uid", "resourceVersion", "creationTimestamp", "selfLink", "annotations"):
        git["metadata"].pop(server_field, None)
    git.pop("status", None)
    assert found(git, v1) == {}


def test_hpa_v2beta1_manifest_against_v2_live() -> None:
    v1 = hpa_v1()
    cpu = v1["spec"]["targetCPUUtilizationPercentage"]
    git = {"apiVersion": "autoscaling/v2beta1", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": v1["metadata"]["name"], "namespace": v1["metadata"]["namespace"]},
           "spec": {**{k: v for k, v in v1["spec"].items() if k != "targetCPUUtilizationPercentage"},
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "targetAverageUtilization": cpu}}]}}
    assert found(git, as_v2(v1, cpu)) == {}


# ---------------------------------------------------------------------------------------------
# Drift age


def test_drift_since_is_the_earliest_attributed_change() -> None:
    desired, live = p02()
    live["spec"]["replicas"] = 3
    live["metadata"]["labels"]["app"] = "changed"
    live = with_managed(
        live,
        managed("kubectl", {"f:spec": {"f:replicas": {}}}, subresource="scale", time="2026-01-15T00:00:00Z"),
        managed("kubectl-label", {"f:metadata": {"f:labels": {"f:app": {}}}}, time="2026-01-03T12:00:00Z"),
    )
    drift = scan(desired, live).drifts[0]
    assert drift.since == "2026-01-03T12:00:00Z"
    assert drift.since_time() is not None and drift.since_time().year == 2026  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------
# Hostile input: the new evidence is read from untrusted objects (Git, snapshots)


def test_hostile_crd_and_last_applied_neither_crash_nor_hang() -> None:
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(20_000):  # far deeper than any real schema; walked only to a bound
        deep = {"type": "object", "properties": {"x": deep}}
    crd = copy.deepcopy(GATEWAY_CRD)
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = deep
    desired, live = gateway([HTTP]), gateway([HTTP])
    live["metadata"]["annotations"] = {LAST_APPLIED: "[" * 200_000 + "]" * 200_000}
    result = scan(desired, [live, crd])  # the CRD in the snapshot only: its schema is read, not compared
    assert result.errors == [] and result.drifts == [] and result.resources == 1
    live["metadata"]["annotations"] = {LAST_APPLIED: json.dumps({"metadata": {"labels": "not a map"}, "spec": 7})}
    assert scan(desired, live).drifts == []


def test_argo_cd_known_types_rollout_embedded_pod_spec() -> None:
    # Argo CD util/argo/normalizers/knowntypes_normalizer_test.go TestNormalize_MapField: a CR
    # (some.io TestCRD; Argo Rollouts are preconfigured alike) embedding a PodSpec with
    # `readOnly: false` and `cpu: 2000m`. peer verdict: normalized through core/v1 types, readOnly
    # false is dropped and 2000m reads 2, so neither differs. Same here: the embedded Go types read a
    # zero value and an absent field alike; quantities compare by amount.
    git = yaml.safe_load("""
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: canary-demo, namespace: demo}
spec:
  template:
    metadata: {labels: {app: canary-demo}}
    spec:
      containers:
      - image: something:latest
        name: canary-demo
        volumeMounts:
        - {name: config-volume, mountPath: /etc/config, readOnly: false}
        resources:
          requests: {cpu: 2000m, memory: 32Mi}
""")
    live = copy.deepcopy(git)
    container = live["spec"]["template"]["spec"]["containers"][0]
    del container["volumeMounts"][0]["readOnly"]
    container["resources"]["requests"]["cpu"] = "2"
    assert found(git, live) == {}


FLUX_HPA = yaml.safe_load("""
# fluxcd/pkg ssa/testdata/test6.yaml (TestDiffHPA), named for one namespace
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: frontend, namespace: apps}
spec:
  maxReplicas: 30
  minReplicas: 2
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: frontend}
  metrics:
    - type: Pods
      pods:
        metric: {name: nginx_http_requests_total}
        target: {averageValue: "4", type: AverageValue}
    - type: Pods
      pods:
        metric: {name: nginx_http_requests_total2}
        target: {averageValue: "4", type: AverageValue}
""")


def test_flux_diff_hpa_removed_metric() -> None:
    # fluxcd/pkg ssa/manager_diff_test.go TestDiffHPA "generates diff for removed metric": applied
    # with two metrics, Git keeps the first. peer verdict: Configured. `metrics` is `+listType=atomic`
    # (kubernetes/api autoscaling/v2/types.go), so the applier owns the list whole (`f:metrics: {}`).
    live = with_managed(copy.deepcopy(FLUX_HPA), managed("kustomize-controller", {"f:spec": {
        "f:maxReplicas": {}, "f:minReplicas": {}, "f:metrics": {}, "f:scaleTargetRef": {}}}, operation="Apply"))
    git = copy.deepcopy(FLUX_HPA)
    assert found(git, live) == {}  # peer verdict: Unchanged
    git["spec"]["metrics"] = git["spec"]["metrics"][:1]
    got = found(git, live)
    assert list(got) == ["spec.metrics[name=nginx_http_requests_total2,type=Pods]"]
    # Reordered by the HPA controller only (SPEC: lists re-ordered by controllers): not drift.
    reordered = copy.deepcopy(live)
    reordered["spec"]["metrics"].reverse()
    assert found(copy.deepcopy(FLUX_HPA), reordered) == {}


def test_kubediff_shuffled_lists_where_order_matters() -> None:
    # weaveworks/kubediff kubedifflib/tests/test_diff.py test_same_list_shuffled_is_not_different: any
    # list reordered is no difference. peer verdict: no diff. kubedrift rightly disagrees for lists
    # without a merge key: a container's `command` is run in order (`cat non-existent-file` is not
    # `non-existent-file cat`). Keyed lists (ports, env, containers) match by key and may reorder.
    desired, live = p02()
    nginx(live)["livenessProbe"]["exec"]["command"].reverse()
    assert list(found(desired, live)) == [f"{NGINX}.livenessProbe.exec.command"]
    desired, live = p02()
    nginx(desired)["env"] = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    nginx(live)["env"] = [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]
    assert found(desired, live) == {}
