"""Each normalization rule: equal in meaning never drifts; a real difference still does."""

from __future__ import annotations

import base64
import copy

import pytest
from tests.support.objects import changes, deployment, managed, scan, with_managed

from kubedrift.model import Category

CONTAINER = "spec.template.spec.containers[name=web]"


def _set_requests(body: dict, **values: object) -> dict:
    body = copy.deepcopy(body)
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": dict(values)}
    return body


@pytest.mark.parametrize(
    ("git", "live"),
    [
        ({"cpu": 0.5}, {"cpu": "500m"}),
        ({"cpu": "1000m"}, {"cpu": "1"}),
        ({"cpu": 1}, {"cpu": "1"}),
        ({"cpu": 2}, {"cpu": "2"}),
        ({"memory": "1024Mi"}, {"memory": "1Gi"}),
        ({"memory": "1000M"}, {"memory": "1G"}),
        ({"memory": "0.125Gi"}, {"memory": "128Mi"}),
        ({"ephemeral-storage": "2048Mi"}, {"ephemeral-storage": "2Gi"}),
    ],
)
def test_quantities_compare_by_value(git: dict, live: dict) -> None:
    assert scan(_set_requests(deployment(), **git), _set_requests(deployment(), **live)).drifts == []


def test_different_quantity_is_resource_drift() -> None:
    found = changes(_set_requests(deployment(), cpu="500m"), _set_requests(deployment(), cpu="1"))
    change = found[f"{CONTAINER}.resources.requests.cpu"]
    assert (change.desired, change.live, change.category) == ("500m", "1", Category.RESOURCE_CHANGE)


def test_quantity_notation_outside_resources_is_not_equated() -> None:
    git, live = deployment(), deployment()
    git["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "HEAP", "value": "1000M"}]
    live["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "HEAP", "value": "1G"}]
    assert f"{CONTAINER}.env[name=HEAP].value" in changes(git, live)


def test_int_or_string_ports() -> None:
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
    }
    live = copy.deepcopy(svc)
    live["spec"]["ports"] = [{"port": 80, "targetPort": "8080", "protocol": "TCP"}]
    live["spec"].update({"type": "ClusterIP", "clusterIP": "10.0.0.7", "sessionAffinity": "None"})
    assert scan(svc, live).drifts == []


def test_ports_without_protocol_match_tcp_ports() -> None:
    live = deployment()
    live["spec"]["template"]["spec"]["containers"][0]["ports"] = [
        {"containerPort": 8080, "name": "http", "protocol": "TCP"}
    ]
    assert scan(deployment(), live).drifts == []


def test_secret_string_data_equals_base64_data() -> None:
    git = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "stringData": {"password": "s3cr3t-value"},
        "type": "Opaque",
    }
    live = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "db", "namespace": "shop"},
        "data": {"password": base64.b64encode(b"s3cr3t-value").decode()},
        "type": "Opaque",
    }
    assert scan(git, live).drifts == []


@pytest.mark.parametrize(("git_value", "live_value"), [({}, None), ([], None), ({}, "absent"), ([], "absent")])
def test_empty_equals_absent(git_value: object, live_value: object) -> None:
    git = deployment()
    git["spec"]["template"]["spec"]["nodeSelector"] = git_value
    live = deployment()
    if live_value != "absent":
        live["spec"]["template"]["spec"]["nodeSelector"] = live_value
    assert scan(git, live).drifts == []


def test_empty_rules_read_back_as_null() -> None:
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "r"}, "rules": []}
    live = dict(role, rules=None)
    assert scan(role, live).drifts == []
    live_with_rule = dict(role, rules=[{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}])
    drift = scan(role, live_with_rule).drifts[0]
    assert drift.changes[0].category is Category.SECURITY_CHANGE


def test_status_and_server_metadata_ignored() -> None:
    live = deployment()
    live["metadata"].update(
        {
            "uid": "0b0c",
            "resourceVersion": "42",
            "generation": 3,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "selfLink": "/apis/apps/v1/namespaces/shop/deployments/web",
            "annotations": {
                "deployment.kubernetes.io/revision": "7",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
            },
        }
    )
    live["status"] = {"replicas": 2, "readyReplicas": 1}
    git = deployment()
    git["metadata"]["creationTimestamp"] = None
    git["status"] = {}
    assert scan(git, live).drifts == []


def test_server_defaults_only_live_are_not_drift() -> None:
    live = deployment()
    live["spec"].update(
        {
            "progressDeadlineSeconds": 600,
            "revisionHistoryLimit": 10,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        }
    )
    pod = live["spec"]["template"]["spec"]
    pod.update(
        {
            "dnsPolicy": "ClusterFirst",
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30,
        }
    )
    pod["containers"][0].update(
        {
            "imagePullPolicy": "IfNotPresent",
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }
    )
    assert scan(deployment(), live).drifts == []


def test_applied_api_version_differs_from_stored_one() -> None:
    git = deployment()
    git["apiVersion"] = "apps/v1beta1"
    assert scan(git, deployment()).drifts == []
    old_group = deployment()
    old_group["apiVersion"] = "extensions/v1beta1"
    assert scan(old_group, deployment()).drifts == []


def test_volume_claim_templates_gain_kind_and_status() -> None:
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "shop"},
        "spec": {
            "volumeClaimTemplates": [
                {
                    "metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1024Mi"}}},
                }
            ]
        },
    }
    live = copy.deepcopy(sts)
    vct = live["spec"]["volumeClaimTemplates"][0]
    vct.update({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": "Pending"}})
    vct["metadata"]["creationTimestamp"] = None
    vct["spec"].update({"volumeMode": "Filesystem", "resources": {"requests": {"storage": "1Gi"}}})
    assert scan(sts, live).drifts == []


def test_lists_reordered_by_controllers_match_by_key() -> None:
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
                },
                {
                    "type": "Resource",
                    "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 70}},
                },
            ]
        },
    }
    live = copy.deepcopy(hpa)
    live["spec"]["metrics"].reverse()
    assert scan(hpa, live).drifts == []
    git_env, live_env = deployment(), deployment()
    git_env["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
    ]
    live_env["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "B", "value": "2"},
        {"name": "A", "value": "1"},
    ]
    assert scan(git_env, live_env).drifts == []


def test_plain_lists_compare_whole_and_in_order() -> None:
    git, live = deployment(), deployment()
    git["spec"]["template"]["spec"]["containers"][0]["args"] = ["--port", "8080"]
    live["spec"]["template"]["spec"]["containers"][0]["args"] = ["8080", "--port"]
    change = changes(git, live)[f"{CONTAINER}.args"]
    assert (change.desired, change.live) == (["--port", "8080"], ["8080", "--port"])


def test_item_fields_only_live_in_plain_lists_are_defaults() -> None:
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "v"},
        "webhooks": [
            {
                "name": "v.example.com",
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["deployments"],
                    }
                ],
            }
        ],
    }
    live = copy.deepcopy(webhook)
    live["webhooks"][0]["rules"][0]["scope"] = "*"
    live["webhooks"][0].update(
        {
            "namespaceSelector": {},
            "objectSelector": {},
            "matchPolicy": "Equivalent",
            "timeoutSeconds": 10,
            "failurePolicy": "Fail",
        }
    )
    assert scan(webhook, live).drifts == []


def test_injected_ca_bundle_is_not_drift_unless_a_person_wrote_it() -> None:
    git = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "m"},
        "webhooks": [
            {"name": "m.example.com", "clientConfig": {"caBundle": "Cg==", "service": {"name": "s", "namespace": "x"}}}
        ],
    }
    live = copy.deepcopy(git)
    live["webhooks"][0]["clientConfig"]["caBundle"] = "LS0tLS1CRUdJTi=="
    fields = {"f:webhooks": {'k:{"name":"m.example.com"}': {"f:clientConfig": {"f:caBundle": {}}}}}
    assert scan(git, with_managed(live, managed("cainjector", fields))).drifts == []
    by_hand = scan(git, with_managed(live, managed("kubectl-patch", fields))).drifts
    assert [c.path for c in by_hand[0].changes] == ["webhooks[name=m.example.com].clientConfig.caBundle"]
