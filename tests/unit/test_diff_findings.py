"""Drift found: every category, hand edits, attribution, ignore rules, severity and score."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from tests.support.objects import changes, deployment, managed, only_drift, scan, with_managed

from kubedrift.diff.classify import score
from kubedrift.model import (
    Category,
    Change,
    DiffSettings,
    DriftState,
    IgnoreRule,
    Severity,
    SeverityOverride,
)
from kubedrift.policy import PolicyError, parse_policy

CONTAINER = "spec.template.spec.containers[name=web]"


def _pod_spec(body: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = body["spec"]["template"]["spec"]
    return spec


def _container(body: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = _pod_spec(body)["containers"][0]
    return container


def _secret_env(name: str) -> Any:
    return lambda b: _container(b)["env"].__setitem__(
        0, {"name": "MODE", "valueFrom": {"secretKeyRef": {"name": name, "key": "k"}}}
    )


def _init_image(tag: str) -> Any:
    return lambda b: _pod_spec(b).update(initContainers=[{"name": "migrate", "image": f"ghcr.io/example/m:{tag}"}])


# case: (edit of the Git side or None, edit of the live side, reported path, category)
CATEGORY_CASES: dict[str, tuple[Any, Any, str, Category]] = {
    "scaling": (None, lambda b: b["spec"].update(replicas=3), "spec.replicas", Category.SCALING),
    "image": (
        None,
        lambda b: _container(b).update(image="ghcr.io/example/web:1.0.1"),
        f"{CONTAINER}.image",
        Category.VERSION_CHANGE,
    ),
    "init image": (
        _init_image("1"),
        _init_image("2"),
        "spec.template.spec.initContainers[name=migrate].image",
        Category.VERSION_CHANGE,
    ),
    "resources": (
        None,
        lambda b: _container(b)["resources"]["requests"].update(memory="2Gi"),
        f"{CONTAINER}.resources.requests.memory",
        Category.RESOURCE_CHANGE,
    ),
    "env value": (
        None,
        lambda b: _container(b)["env"][0].update(value="debug"),
        f"{CONTAINER}.env[name=MODE].value",
        Category.CONFIGURATION_CHANGE,
    ),
    "secret ref": (
        _secret_env("app"),
        _secret_env("other"),
        f"{CONTAINER}.env[name=MODE].valueFrom.secretKeyRef.name",
        Category.SECRET_CHANGE,
    ),
    "configmap ref": (
        lambda b: _container(b).update(envFrom=[{"configMapRef": {"name": "app"}}]),
        lambda b: _container(b).update(envFrom=[{"configMapRef": {"name": "other"}}]),
        f"{CONTAINER}.envFrom",
        Category.CONFIGMAP_CHANGE,
    ),
    "port": (
        None,
        lambda b: _container(b)["ports"][0].update(name="web"),
        f"{CONTAINER}.ports[containerPort=8080,protocol=TCP].name",
        Category.PORT_CHANGE,
    ),
    "volume mount": (
        lambda b: _container(b).update(volumeMounts=[{"name": "data", "mountPath": "/data"}]),
        lambda b: _container(b).update(volumeMounts=[{"name": "data", "mountPath": "/srv"}]),
        f"{CONTAINER}.volumeMounts[mountPath=/data]",
        Category.VOLUME_CHANGE,
    ),
    "security": (
        lambda b: _pod_spec(b).update(serviceAccountName="web"),
        lambda b: _pod_spec(b).update(serviceAccountName="admin"),
        "spec.template.spec.serviceAccountName",
        Category.SECURITY_CHANGE,
    ),
    "privileged": (
        lambda b: _container(b).update(securityContext={"privileged": False}),
        lambda b: _container(b).update(securityContext={"privileged": True}),
        f"{CONTAINER}.securityContext.privileged",
        Category.SECURITY_CHANGE,
    ),
    "label": (
        None,
        lambda b: b["metadata"]["labels"].update(app="other"),
        "metadata.labels.app",
        Category.LABEL_CHANGE,
    ),
    "annotation": (
        lambda b: b["metadata"].update(annotations={"team": "a"}),
        lambda b: b["metadata"].update(annotations={"team": "b"}),
        "metadata.annotations.team",
        Category.ANNOTATION_CHANGE,
    ),
    "other spec config": (
        lambda b: b["spec"].update(minReadySeconds=5),
        lambda b: b["spec"].update(minReadySeconds=30),
        "spec.minReadySeconds",
        Category.CONFIGURATION_CHANGE,
    ),
}


@pytest.mark.parametrize("case", sorted(CATEGORY_CASES))
def test_category_of_each_change(case: str) -> None:
    git_edit, live_edit, path, category = CATEGORY_CASES[case]
    git = deployment()
    if git_edit:
        git_edit(git)
    live = copy.deepcopy(git)
    live_edit(live)
    found = changes(git, live)
    assert list(found) == [path]
    assert found[path].category is category


def test_secret_data_change_is_secret_change_and_redacted() -> None:
    git = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "data": {"password": "c2VjcmV0LW9uZQ=="},
    }
    live = copy.deepcopy(git)
    live["data"]["password"] = "c2VjcmV0LXR3bw=="
    change = changes(git, live)["data.password"]
    assert change.category is Category.SECRET_CHANGE and change.severity is Severity.HIGH
    assert str(change.desired).startswith("hmac:") and len(str(change.desired)) == len("hmac:") + 12
    assert change.desired != change.live


def test_secret_volume_is_secret_change_and_hostpath_is_security() -> None:
    git = deployment()
    _pod_spec(git)["volumes"] = [
        {"name": "creds", "secret": {"secretName": "a"}},
        {"name": "logs", "hostPath": {"path": "/var/log"}},
    ]
    live = copy.deepcopy(git)
    _pod_spec(live)["volumes"][0]["secret"]["secretName"] = "b"
    _pod_spec(live)["volumes"][1]["hostPath"]["path"] = "/"
    found = changes(git, live)
    assert found["spec.template.spec.volumes[name=creds].secret.secretName"].category is Category.SECRET_CHANGE
    assert found["spec.template.spec.volumes[name=logs].hostPath.path"].category is Category.SECURITY_CHANGE


def test_configmap_data_and_volume() -> None:
    git = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "shop"},
        "data": {"LOG_LEVEL": "info"},
    }
    live = copy.deepcopy(git)
    live["data"]["LOG_LEVEL"] = "debug"
    assert changes(git, live)["data.LOG_LEVEL"].category is Category.CONFIGURATION_CHANGE
    dep = deployment()
    _pod_spec(dep)["volumes"] = [{"name": "cfg", "configMap": {"name": "c"}}]
    live_dep = copy.deepcopy(dep)
    _pod_spec(live_dep)["volumes"][0]["configMap"]["name"] = "c2"
    assert changes(dep, live_dep)["spec.template.spec.volumes[name=cfg].configMap.name"].category is (
        Category.CONFIGMAP_CHANGE
    )


def test_key_removed_from_git_stays_live_in_configmap_and_secret() -> None:
    for kind, value in (("ConfigMap", "on"), ("Secret", "b24=")):
        git = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "c", "namespace": "shop"}, "data": {"A": value}}
        live = copy.deepcopy(git)
        live["data"]["OLD_FLAG"] = value
        change = changes(git, live)["data.OLD_FLAG"]
        assert change.desired is None
        assert change.live == (value if kind == "ConfigMap" else change.live)
        if kind == "Secret":
            assert str(change.live).startswith("hmac:")


def test_other_category_outside_spec() -> None:
    git = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "v"},
        "webhooks": [{"name": "a.example.com", "timeoutSeconds": 5}],
    }
    live = copy.deepcopy(git)
    live["webhooks"][0]["timeoutSeconds"] = 30
    assert changes(git, live)["webhooks[name=a.example.com].timeoutSeconds"].category is Category.OTHER


def test_missing_object() -> None:
    result = scan([deployment(), deployment("api")], [deployment()])
    assert [d.id for d in result.drifts] == ["Deployment:shop:api"]
    drift = result.drifts[0]
    assert drift.state is DriftState.MISSING and drift.severity is Severity.HIGH
    assert drift.categories == ["Missing"]
    assert result.resources == 2 and result.missing == 1


def test_live_objects_not_in_git_are_ignored() -> None:
    assert scan([deployment()], [deployment(), deployment("unrelated")]).drifts == []


def test_env_var_added_by_hand_is_drift_with_desired_null() -> None:
    git = deployment()
    live = copy.deepcopy(git)
    _container(live)["env"].append({"name": "DEBUG", "value": "1"})
    fields = {
        "f:spec": {
            "f:template": {
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"web"}': {"f:env": {'k:{"name":"DEBUG"}': {".": {}, "f:name": {}, "f:value": {}}}}
                    }
                }
            }
        }
    }
    by_hand = with_managed(live, managed("kubectl-edit", fields, time="2026-02-03T04:05:06Z"))
    change = changes(git, by_hand)[f"{CONTAINER}.env[name=DEBUG]"]
    assert change.desired is None and change.live == {"name": "DEBUG", "value": "1"}
    assert (change.changed_by, change.changed_at) == ("kubectl-edit", "2026-02-03T04:05:06Z")
    assert change.category is Category.CONFIGURATION_CHANGE
    # the same variable written by a controller is not a person's edit
    assert scan(git, with_managed(live, managed("istio-sidecar-injector", fields))).drifts == []


def test_service_port_added_by_hand() -> None:
    git = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }
    live = copy.deepcopy(git)
    live["spec"]["ports"].append({"name": "debug", "port": 5005, "protocol": "TCP", "targetPort": 5005})
    fields = {
        "f:spec": {
            "f:ports": {
                'k:{"port":5005,"protocol":"TCP"}': {
                    ".": {},
                    "f:name": {},
                    "f:port": {},
                    "f:protocol": {},
                    "f:targetPort": {},
                }
            }
        }
    }
    found = changes(git, with_managed(live, managed("kubectl-patch", fields)))
    change = found["spec.ports[port=5005,protocol=TCP]"]
    assert change.category is Category.PORT_CHANGE and change.desired is None and change.changed_by == "kubectl-patch"


def test_label_added_by_hand_reported_at_its_key() -> None:
    git = deployment()
    live = copy.deepcopy(git)
    live["metadata"]["labels"]["owner"] = "alice"
    fields = {"f:metadata": {"f:labels": {"f:owner": {}}}}
    found = changes(git, with_managed(live, managed("kubectl-label", fields)))
    assert list(found) == ["metadata.labels.owner"]
    assert found["metadata.labels.owner"].category is Category.LABEL_CHANGE


def test_attribution_names_last_writer() -> None:
    git = deployment()
    live = copy.deepcopy(git)
    live["spec"]["replicas"] = 5
    live = with_managed(
        live,
        managed("kubectl-client-side-apply", {"f:spec": {"f:replicas": {}}}, time="2026-01-01T00:00:00Z"),
        managed("kubectl-scale", {"f:spec": {"f:replicas": {}}}, time="2026-01-05T00:00:00Z", subresource="scale"),
    )
    change = changes(git, live)["spec.replicas"]
    assert (change.changed_by, change.changed_at) == ("kubectl-scale", "2026-01-05T00:00:00Z")


@pytest.mark.parametrize(
    ("desired", "live", "severity"),
    [
        (4, 5, Severity.MEDIUM),
        (4, 6, Severity.MEDIUM),
        (4, 7, Severity.HIGH),
        (4, 1, Severity.HIGH),
        (2, 0, Severity.HIGH),
        (0, 1, Severity.HIGH),
    ],
)
def test_scaling_severity(desired: int, live: int, severity: Severity) -> None:
    git, live_obj = deployment(replicas=desired), deployment(replicas=live)
    assert changes(git, live_obj)["spec.replicas"].severity is severity


def test_resource_severity_is_highest_change_and_score_grows() -> None:
    git = deployment()
    live = copy.deepcopy(git)
    _container(live)["resources"]["requests"]["memory"] = "2Gi"
    one = only_drift(git, live)
    _container(live)["image"] = "ghcr.io/example/web:9"
    two = only_drift(git, live)
    _pod_spec(live)["hostNetwork"] = True
    _pod_spec(git)["hostNetwork"] = False
    three = only_drift(git, live)
    assert (one.severity, two.severity, three.severity) == (Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)
    assert 0 < one.score < two.score < three.score <= 100


def test_score_bounds() -> None:
    many = [Change(f"p{i}", 1, 2, Category.SECURITY_CHANGE, Severity.CRITICAL) for i in range(50)]
    assert score(many[:1]) < score(many[:3]) <= score(many) <= 100
    assert score([]) == 0
    low = score([Change("metadata.labels.a", "x", "y", Category.LABEL_CHANGE, Severity.LOW)])
    assert 0 < low < score([Change("spec.replicas", 1, 9, Category.SCALING, Severity.HIGH)])


def test_severity_overrides_by_kind_category_namespace() -> None:
    git = deployment()
    live = copy.deepcopy(git)
    live["metadata"]["labels"]["app"] = "x"
    settings = DiffSettings(
        severity_overrides=[
            SeverityOverride(Severity.HIGH, kind="Deployment", category=Category.LABEL_CHANGE, namespace="shop")
        ]
    )
    assert only_drift(git, live, settings).severity is Severity.HIGH
    elsewhere = DiffSettings(severity_overrides=[SeverityOverride(Severity.HIGH, namespace="other")])
    assert only_drift(git, live, elsewhere).severity is Severity.LOW


def test_ignore_rules_json_pointer_jq_and_managers() -> None:
    git = deployment()
    live = copy.deepcopy(git)
    live["spec"]["replicas"] = 9
    _container(live)["image"] = "ghcr.io/example/web:2"
    live = with_managed(live, managed("kube-controller-manager", {"f:spec": {"f:replicas": {}}}))
    assert set(changes(git, live)) == {"spec.replicas", f"{CONTAINER}.image"}
    pointer = DiffSettings(ignore_rules=[IgnoreRule(group="apps", kind="Deployment", json_pointers=["/spec/replicas"])])
    assert set(changes(git, live, pointer)) == {f"{CONTAINER}.image"}
    jq_rule = DiffSettings(
        ignore_rules=[
            IgnoreRule(
                kind="Deployment",
                jq_path_expressions=['.spec.template.spec.containers[] | select(.name == "web") | .image'],
            )
        ]
    )
    assert set(changes(git, live, jq_rule)) == {"spec.replicas"}
    managers = DiffSettings(
        ignore_rules=[IgnoreRule(kind="Deployment", managed_fields_managers=["kube-controller-manager"])]
    )
    assert set(changes(git, live, managers)) == {f"{CONTAINER}.image"}
    other_name = DiffSettings(ignore_rules=[IgnoreRule(kind="Deployment", name="api", json_pointers=["/spec"])])
    assert set(changes(git, live, other_name)) == {"spec.replicas", f"{CONTAINER}.image"}


def test_autoscaled_replicas_are_ignored() -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 10,
        },
    }
    assert scan([deployment(), hpa], [deployment(replicas=7), hpa]).drifts == []
    assert scan([deployment()], [deployment(replicas=7)]).drifts  # without the HPA it is drift


def test_ignore_annotation_in_git_or_live() -> None:
    git, live = deployment(), deployment(replicas=9)
    assert scan(git, live).drifts
    for side in (git, live):
        marked = copy.deepcopy(side)
        marked["metadata"]["annotations"] = {"kubedrift.dev/ignore": "true"}
        pair = (marked, live) if side is git else (git, marked)
        assert scan(*pair).drifts == []


def test_include_and_exclude_kinds() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}, "data": {"a": "1"}}
    live_cm = dict(cm, data={"a": "2"})
    both = ([deployment(), cm], [deployment(replicas=9), live_cm])
    assert {d.key.kind for d in scan(*both, DiffSettings(include_kinds=["ConfigMap"])).drifts} == {"ConfigMap"}
    assert {d.key.kind for d in scan(*both, DiffSettings(exclude_kinds=["ConfigMap"])).drifts} == {"Deployment"}


def test_ordering_is_deterministic_severity_first() -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}, "data": {"a": "1"}}
    git = [cm, deployment("b"), deployment("a")]
    live = [dict(cm, data={"a": "2"}), deployment("b", replicas=9), deployment("a", replicas=9)]
    ids = [d.id for d in scan(git, live).drifts]
    assert ids == ["Deployment:shop:a", "Deployment:shop:b", "ConfigMap:shop:c"]
    assert [d.id for d in scan(list(reversed(git)), list(reversed(live))).drifts] == ids


def test_policy_manifest_sets_rules_and_rejects_bad_fields() -> None:
    policy = {
        "apiVersion": "kubedrift.dev/v1alpha1",
        "kind": "DriftPolicy",
        "metadata": {"name": "shop", "namespace": "platform"},
        "spec": {
            "source": {"repoURL": "https://git.example.com/shop.git", "paths": ["apps"]},
            "interval": "1h30m",
            "ignoreDifferences": [{"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}],
            "severityOverrides": [{"kind": "ConfigMap", "severity": "high"}],
        },
    }
    spec = parse_policy(policy)
    assert spec.interval_seconds == 5400 and spec.settings.default_namespace == "default"
    assert spec.settings.ignore_rules[0].json_pointers == ["/spec/replicas"]
    assert spec.settings.severity_overrides[0].severity is Severity.HIGH
    for field, value, message in (
        ("interval", "soon", "spec.interval"),
        ("severityOverrides", [{"severity": "urgent"}], "spec.severityOverrides[0].severity"),
        ("ignoreDifferences", [{"jsonPointers": ["spec/replicas"]}], "spec.ignoreDifferences[0].jsonPointers[0]"),
    ):
        bad = copy.deepcopy(policy)
        bad["spec"][field] = value
        with pytest.raises(PolicyError, match=message.replace("[", r"\[").replace("]", r"\]")):
            parse_policy(bad)


def test_set_member_added_by_hand_reports_the_list() -> None:
    git = deployment()
    live = copy.deepcopy(git)
    live["metadata"]["finalizers"] = ["example.com/keep"]
    fields = {"f:metadata": {"f:finalizers": {".": {}, 'v:"example.com/keep"': {}}}}
    found = changes(git, with_managed(live, managed("kubectl-patch", fields)))
    assert list(found) == ["metadata.finalizers"]
    assert (found["metadata.finalizers"].desired, found["metadata.finalizers"].live) == (None, ["example.com/keep"])


def test_inputs_are_never_mutated() -> None:
    git = deployment()
    _pod_spec(git)["volumes"] = [{"name": "cfg", "configMap": {"name": "c"}}]
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "shop"},
        "stringData": {"k": "v"},
    }
    live = copy.deepcopy(git)
    live["spec"]["replicas"] = 9
    _container(live)["env"].append({"name": "DEBUG", "value": "1"})
    fields = {
        "f:spec": {
            "f:template": {
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"web"}': {"f:env": {'k:{"name":"DEBUG"}': {".": {}, "f:name": {}, "f:value": {}}}}
                    }
                }
            }
        }
    }
    live = with_managed(live, managed("kubectl-edit", fields))
    live_secret = {**secret, "data": {"k": "dw=="}}
    del live_secret["stringData"]
    settings = DiffSettings(
        ignore_rules=[
            IgnoreRule(
                kind="Deployment", json_pointers=["/spec/replicas"], jq_path_expressions=[".spec.template.spec.volumes"]
            )
        ]
    )
    before = copy.deepcopy(([git, secret], [live, live_secret]))
    assert scan([git, secret], [live, live_secret], settings).drifts
    assert ([git, secret], [live, live_secret]) == before
