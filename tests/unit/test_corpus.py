"""Real objects captured from API servers (../shared/corpus/live-objects, see its SOURCES.md).

No-drift pairs must compare clean; the pairs with real drift must report exactly it; drift
injected into the real objects must be found with the right category.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.support.corpus import last_applied, load_docs, load_one
from tests.support.objects import changes, managed, scan, with_managed

from kubedrift.model import Category, DiffSettings, IgnoreRule, KubeObject, Severity

GE = "argoproj__gitops-engine__pkg__diff__testdata__"
ARGO = "argoproj__argo-cd__"
K9S = "derailed__k9s__internal__"
WEB = "kubernetes__website__content__en__docs__tasks__configmap-secret__managing-secret-using-config-file.md__"

# SOURCES.md pairs whose every difference is a default, injection or server metadata.
CLEAN_PAIRS = {
    "P02": (GE + "smd-deploy-config.yaml", GE + "smd-deploy-live.yaml"),
    "P05": (GE + "ssd-service-config.yaml", GE + "ssd-service-live.yaml"),
    "P08": (GE + "elasticsearch-config.json", GE + "elasticsearch-live.json"),
    "P09": (GE + "endpoints-config.json", GE + "endpoints-live.json"),
    "P10": (GE + "mutatingwebhookconfig-config.json", GE + "mutatingwebhookconfig-live.json"),
    "P11": (GE + "sealedsecret-config.json", GE + "sealedsecret-live.json"),
    "P12": (GE + "wordpress-config.json", GE + "wordpress-live.json"),
    "P13": (GE + "spinnaker-sa-config.json", GE + "spinnaker-sa-live.json"),
    "P14": (GE + "aggr-clusterrole-config.json", GE + "aggr-clusterrole-live.json"),
    "P15": (GE + "grafana-clusterrole-config.json", GE + "grafana-clusterrole-live.json"),
    "P18": (
        ARGO + "util__argo__testdata__desired_validating_webhook.yaml",
        ARGO + "util__argo__testdata__live_validating_webhook.yaml",
    ),
    "P19": (
        "itaysk__kubectl-neat__test__fixtures__pod1-neat.json",
        "itaysk__kubectl-neat__test__fixtures__pod1-raw.json",
    ),
    "P20": (
        "itaysk__kubectl-neat__test__fixtures__service1-neat.json",
        "itaysk__kubectl-neat__test__fixtures__service1-raw.json",
    ),
    "P21": (
        "kubernetes__kubernetes__staging__src__k8s.io__kubectl__testdata__apply__rc.yaml",
        "kubernetes__kubernetes__staging__src__k8s.io__kubectl__testdata__apply__rc-managedfields-lastapplied.yaml",
    ),
    "P22": (WEB + "block-data-and-stringdata-desired.yaml", WEB + "block-data-and-stringdata-live.yaml"),
}
SELF_PAIRED = {
    "L01": "argoproj__gitops-engine__pkg__health__testdata__statefulset.yaml",
    "L02": "argoproj__gitops-engine__pkg__health__testdata__pvc-bound.yaml",
    "L03": "argoproj__gitops-engine__pkg__health__testdata__svc-clusterip.yaml",
    "L04": K9S + "xray__testdata__ds.json",
    "L05": K9S + "render__testdata__ds.json",
    "L06": K9S + "xray__testdata__sts.json",
    "L07": K9S + "render__testdata__dp.json",
    "L08": K9S + "render__testdata__cj.json",
    "L09": K9S + "render__testdata__cm.json",
    "L10": K9S + "render__testdata__sec.json",
    "L11": K9S + "render__testdata__svc.json",
    "L12": K9S + "render__testdata__hpa.json",
    "L13": K9S + "render__testdata__np.json",
}


def _pair(desired: dict[str, Any], live: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A manifest without a namespace belongs to the policy's default namespace: here, the live one."""
    desired = copy.deepcopy(desired)
    namespace = live.get("metadata", {}).get("namespace")
    if namespace and not desired.get("metadata", {}).get("namespace"):
        desired.setdefault("metadata", {})["namespace"] = namespace
    return desired, live


def _clean_pairs() -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    pairs = {pid: _pair(load_one(d), load_one(lv)) for pid, (d, lv) in CLEAN_PAIRS.items()}
    git_doc, live_doc = load_docs(
        "pipe-cd__pipecd__pkg__app__piped__platformprovider__kubernetes__testdata__diff_ignore_missing_fields.yaml"
    )
    pairs["P23"] = _pair(git_doc, live_doc)
    for pid, name in SELF_PAIRED.items():
        live = load_one(name)
        pairs[pid] = _pair(last_applied(live), live)
    daemonsets = load_one("backstage__backstage__plugins__kubernetes-react__src____fixtures____2-daemonsets.json")
    for i, ds in enumerate(daemonsets["daemonSets"]):
        pairs[f"L14.{i}"] = _pair(last_applied(ds), ds)
    return pairs


CLEAN = _clean_pairs()


@pytest.mark.parametrize("pair_id", sorted(CLEAN))
def test_no_drift_pair_compares_clean(pair_id: str) -> None:
    desired, live = CLEAN[pair_id]
    result = scan(desired, live)
    assert result.errors == []
    assert result.drifts == [], [c.to_json() for d in result.drifts for c in d.changes]


def test_all_clean_pairs_at_once() -> None:
    # Some captures share one identity (the same DaemonSet on two clusters): one scan holds one of each.
    unique = {KubeObject(d).key: (d, lv) for d, lv in reversed(CLEAN.values())}
    pairs = list(unique.values())
    assert len(pairs) > 25
    result = scan([d for d, _ in pairs], [lv for _, lv in pairs])
    assert result.resources == len(pairs) and result.drifts == [] and result.errors == []


def test_p04_target_port_changed() -> None:
    found = changes(*_pair(load_one(GE + "smd-service-config.yaml"), load_one(GE + "smd-service-live.yaml")))
    assert list(found) == ["spec.ports[port=1935,protocol=TCP].targetPort"]
    change = found["spec.ports[port=1935,protocol=TCP].targetPort"]
    assert (change.desired, change.live, change.category) == (1936, 1935, Category.PORT_CHANGE)


def test_p03_resources_git_no_longer_declares_are_reported() -> None:
    found = changes(*_pair(load_one(GE + "smd-deploy2-config.yaml"), load_one(GE + "smd-deploy2-live.yaml")))
    base = "spec.template.spec.containers[name=nginx].resources.requests"
    assert {p: (c.desired, c.live) for p, c in found.items()} == {
        f"{base}.cpu": (None, "500m"),
        f"{base}.memory": (None, "512Mi"),
    }
    assert {c.category for c in found.values()} == {Category.RESOURCE_CHANGE}


def test_p06_label_removed_from_git_still_live() -> None:
    found = changes(*_pair(load_one(GE + "ssd-svc-no-label-config.yaml"), load_one(GE + "ssd-svc-label-live.yaml")))
    assert list(found) == ["metadata.labels.delete-me"]
    assert found["metadata.labels.delete-me"].category is Category.LABEL_CHANGE
    assert found["metadata.labels.delete-me"].changed_by == "argocd-controller"


def test_p07_port_missing_live() -> None:
    found = changes(
        *_pair(
            load_one(GE + "ssd-deploy-with-manual-apply-config.yaml"),
            load_one(GE + "ssd-deploy-with-manual-apply-live.yaml"),
        )
    )
    path = "spec.template.spec.containers[name=main-container].ports[containerPort=40,protocol=TCP]"
    assert list(found) == [path]
    assert found[path].live is None and found[path].category is Category.PORT_CHANGE


def test_p16_replicas_and_annotation_changed_by_other_actors() -> None:
    found = changes(
        *_pair(
            load_one(ARGO + "controller__testdata__target-deployment.yaml"),
            load_one(ARGO + "controller__testdata__live-deployment.yaml"),
        )
    )
    assert {p: (c.desired, c.live, c.category, c.changed_by) for p, c in found.items()} == {
        "spec.replicas": (1, 4, Category.SCALING, "argocd"),
        "metadata.annotations.iksm-version": ("1.0", "2.0", Category.ANNOTATION_CHANGE, "janitor"),
    }
    assert found["spec.replicas"].severity is Severity.HIGH


def test_p17_managed_fields_managers_ignore_rule() -> None:
    pair = _pair(
        load_one(ARGO + "util__argo__testdata__desired_deployment.yaml"),
        load_one(ARGO + "util__argo__testdata__live_deployment_with_managed_replica.yaml"),
    )
    assert set(changes(*pair)) == {"spec.replicas", "spec.revisionHistoryLimit"}
    rule = IgnoreRule(
        kind="Deployment", managed_fields_managers=["kube-controller-manager", "revision-history-manager"]
    )
    assert scan(*pair, DiffSettings(ignore_rules=[rule])).drifts == []


def _container(live: dict[str, Any]) -> dict[str, Any]:
    spec = live["spec"]["template"]["spec"]
    container: dict[str, Any] = spec["containers"][0]
    return container


# Drift injected into real live objects: (pair, edit of the live object, expected path, category).
INJECTED: dict[str, tuple[str, Any, str, Category]] = {
    "replicas": ("P02", lambda o: o["spec"].update(replicas=9), "spec.replicas", Category.SCALING),
    "image": (
        "P02",
        lambda o: _container(o).update(image="nginx:1.25"),
        "spec.template.spec.containers[name=nginx].image",
        Category.VERSION_CHANGE,
    ),
    "probe": (
        "P02",
        lambda o: _container(o)["livenessProbe"].update(periodSeconds=10),
        "spec.template.spec.containers[name=nginx].livenessProbe.periodSeconds",
        Category.CONFIGURATION_CHANGE,
    ),
    "es resources": (
        "P08",
        lambda o: _container(o)["resources"]["limits"].update(cpu="2"),
        "spec.template.spec.containers[name=elasticsearch].resources.limits.cpu",
        Category.RESOURCE_CHANGE,
    ),
    "es env": (
        "P08",
        lambda o: _container(o)["env"][0].update(value="changed"),
        "spec.template.spec.containers[name=elasticsearch].env[name=DISCOVERY_SERVICE].value",
        Category.CONFIGURATION_CHANGE,
    ),
    "es configmap volume": (
        "P08",
        lambda o: o["spec"]["template"]["spec"]["volumes"][0]["configMap"].update(name="other-config"),
        "spec.template.spec.volumes[name=config].configMap.name",
        Category.CONFIGMAP_CHANGE,
    ),
    "es mount": (
        "P08",
        lambda o: _container(o)["volumeMounts"][0].update(name="other"),
        "spec.template.spec.containers[name=elasticsearch].volumeMounts[mountPath=/usr/share/elasticsearch/data].name",
        Category.VOLUME_CHANGE,
    ),
    "service port": (
        "P05",
        lambda o: o["spec"]["ports"][0].update(targetPort=9999),
        "spec.ports[port=7777,protocol=TCP].targetPort",
        Category.PORT_CHANGE,
    ),
    "secret value": ("P22", lambda o: o["data"].update(username="cm9vdA=="), "data.username", Category.SECRET_CHANGE),
    "rbac rule": (
        "P15",
        lambda o: o.update(rules=[{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
        "rules",
        Category.SECURITY_CHANGE,
    ),
    "webhook timeout": (
        "P18",
        lambda o: o["webhooks"][0].update(timeoutSeconds=29),
        "webhooks[name=validate.externalsecret.external-secrets.io].timeoutSeconds",
        Category.OTHER,
    ),
    "label": ("P02", lambda o: o["metadata"]["labels"].update(app="x"), "metadata.labels.app", Category.LABEL_CHANGE),
    "configmap data": ("L09", lambda o: o["data"].update(key1="changed"), "data.key1", Category.CONFIGURATION_CHANGE),
    "host path": (
        "L04",
        lambda o: o["spec"]["template"]["spec"]["volumes"][0]["hostPath"].update(path="/"),
        "spec.template.spec.volumes[name=varlog].hostPath.path",
        Category.SECURITY_CHANGE,
    ),
}


@pytest.mark.parametrize("case", sorted(INJECTED))
def test_injected_drift_in_real_objects(case: str) -> None:
    pair_id, edit, path, category = INJECTED[case]
    desired, live = CLEAN[pair_id]
    live = copy.deepcopy(live)
    edit(live)
    found = changes(desired, live)
    assert list(found) == [path], found
    assert found[path].category is category


def test_injected_hand_edit_on_real_object_is_attributed() -> None:
    desired, live = CLEAN["P02"]
    live = copy.deepcopy(live)
    _container(live).setdefault("env", []).append({"name": "DEBUG", "value": "true"})
    fields = {
        "f:spec": {
            "f:template": {
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"nginx"}': {
                            "f:env": {".": {}, 'k:{"name":"DEBUG"}': {".": {}, "f:name": {}, "f:value": {}}}
                        }
                    }
                }
            }
        }
    }
    found = changes(desired, with_managed(live, managed("kubectl-edit", fields, time="2026-03-01T10:00:00Z")))
    change = found["spec.template.spec.containers[name=nginx].env[name=DEBUG]"]
    assert (change.desired, change.live, change.changed_by) == (
        None,
        {"name": "DEBUG", "value": "true"},
        "kubectl-edit",
    )


def test_missing_real_object() -> None:
    desired, _live = CLEAN["P08"]
    result = scan(desired, [])
    assert [(d.id, d.state.value, d.categories) for d in result.drifts] == [
        (f"StatefulSet:{desired['metadata']['namespace']}:{desired['metadata']['name']}", "missing", ["Missing"])
    ]
