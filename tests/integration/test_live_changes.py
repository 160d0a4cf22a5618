"""Event-driven detection (issue 12): `kubedrift run` as a real process with MongoDB, against the API
emulator, policy interval 1h. A live change reaches its DriftReport, MongoDB record and metrics through
the watch cache and an incremental scan, long before any full scan would run; a revert resolves it; a
deleted object becomes Missing; a watch broken with 410 Gone recovers without losing the change; and a
deleted policy stops its watches."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pymongo
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.support.corpus import in_ns, load_one
from tests.support.emulator import EmulatorServer
from tests.support.git_http import GitHttpServer, serve_git_http
from tests.support.mongo import mongo_base_uri, mongo_uri  # noqa: F401
from tests.support.operator_process import running_operator, wait_for
from tests.support.ports import free_port

from kubedrift.cluster.client import JSON_PATCH, KubeClient, resource_path

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kubedrift.dev", "v1alpha1"
NS = "live"
POLICY_ID = f"{NS}/app"
DEPLOY_LIVE = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-live.yaml"
DEPLOY_GIT = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-config.yaml"
NAME = "nginx-deployment"
DEPLOY_ID = f"Deployment:{NS}:{NAME}"
CONFIG_ID = f"ConfigMap:{NS}:settings"
IMAGE_PATH = "/spec/template/spec/containers/0/image"


def config_map(mode: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": NS},
            "data": {"mode": mode}}


@dataclass
class Operator:
    cluster: EmulatorServer
    base: str
    db: Any
    custom: Any
    kube: KubeClient
    git: GitHttpServer

    def reports(self) -> dict[str, dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, NS, "driftreports")["items"]
        return {r["spec"]["resourceId"]: r for r in items}

    def report_state(self, rid: str) -> str | None:
        report = self.reports().get(rid)
        return None if report is None else str((report.get("status") or {}).get("state"))

    def records(self) -> dict[str, dict[str, Any]]:
        return {r["resourceId"]: r for r in self.db.drift_records.find({"policy": POLICY_ID})}

    def status(self) -> dict[str, Any]:
        policy = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, "driftpolicies", "app")
        return dict(policy.get("status") or {})

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        text = requests.get(self.base + "/metrics", timeout=10).text
        return [(dict(s.labels), s.value) for family in text_string_to_metric_families(text)
                for s in family.samples if s.name == name]

    def full_scans(self) -> float:
        return sum(v for labels, v in self.samples("kubedrift_scan_duration_seconds_count")
                   if labels.get("policy") == "app")

    def first_seen_series(self) -> set[str]:
        return {f"{labels['kind']}:{labels['resource_namespace']}:{labels['name']}"
                for labels, _ in self.samples("kubedrift_drift_first_seen_timestamp_seconds")
                if labels["policy"] == "app"}

    def set_image(self, image: str) -> None:
        self.kube.request("PATCH", resource_path("apps", "v1", "deployments", NS, NAME),
                          body=[{"op": "replace", "path": IMAGE_PATH, "value": image}], content_type=JSON_PATCH)


@pytest.fixture()
def operator(tmp_path: Path, mongo_uri: str) -> Iterator[Operator]:  # noqa: F811
    cluster = EmulatorServer().start()
    cluster.emulator.bookmark_interval = 0.5
    try:
        for crd in sorted((REPO / "crds").glob("*.yaml")):
            cluster.register_crd_file(crd)
        cluster.install_peering(REPO)
        cluster.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        cluster.seed(in_ns(load_one(DEPLOY_LIVE), NS))
        cluster.seed(config_map("strict"))
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        port = free_port()
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBEDRIFT_HTTP_PORT": str(port),
               "KUBEDRIFT_GIT_CACHE": str(tmp_path / "git-cache"), "MONGODB_URI": mongo_uri,
               "KUBEDRIFT_ALLOW_INSECURE_HTTP": "1", "PYTHONUNBUFFERED": "1"}
        db = pymongo.MongoClient(mongo_uri, tz_aware=True).get_default_database()
        custom = kubernetes.client.CustomObjectsApi(kubernetes.config.new_client_from_config(str(kubeconfig)))
        with serve_git_http(tmp_path / "git", username=None, password=None) as git:
            git.create_repo(NS, {"apps/deployment.yaml": yaml.safe_dump(in_ns(load_one(DEPLOY_GIT), NS)),
                                 "apps/configmap.yaml": yaml.safe_dump(config_map("strict"))})
            cluster.seed({"apiVersion": f"{GROUP}/{VERSION}", "kind": "DriftPolicy",
                          "metadata": {"namespace": NS, "name": "app"},
                          "spec": {"source": {"repoURL": git.url(NS), "revision": "main", "paths": ["apps"]},
                                   "interval": "1h"}})
            with running_operator(["--git-timeout", "20s"], env, tmp_path / "operator.log", port) as base:
                op = Operator(cluster, base, db, custom, KubeClient.from_environment(str(kubeconfig)), git)
                wait_for(lambda: op.status().get("state") == "Clean", "the first scan: all clean")
                assert op.full_scans() == 1
                yield op
    finally:
        cluster.stop()


def test_a_hand_edit_is_reported_within_seconds_and_a_revert_resolves_it(operator: Operator) -> None:
    op = operator
    op.set_image("nginx:9.9.9")
    wait_for(lambda: op.report_state(DEPLOY_ID) == "Active", "the DriftReport of the hand edit", timeout=20)
    report = op.reports()[DEPLOY_ID]
    assert [(c["path"], c["live"]) for c in report["spec"]["changes"]] == [
        ("spec.template.spec.containers[name=nginx].image", "nginx:9.9.9")]
    wait_for(lambda: op.records().get(DEPLOY_ID, {}).get("state") == "active", "the MongoDB record")
    assert op.first_seen_series() == {DEPLOY_ID}
    wait_for(lambda: op.status().get("state") == "Drifted", "the policy status counting it")
    assert op.status()["drifted"] == 1
    assert op.full_scans() == 1, "no full scan ran: the watch event did it"
    assert set(op.reports()) == {DEPLOY_ID}, "only the changed object was re-published"

    op.set_image("nginx:1.23.1")  # back to what Git says
    wait_for(lambda: op.report_state(DEPLOY_ID) == "Resolved", "the report resolved by the revert", timeout=20)
    wait_for(lambda: op.records()[DEPLOY_ID]["state"] == "resolved", "the record resolved")
    assert op.first_seen_series() == set()
    wait_for(lambda: op.status().get("state") == "Clean", "the policy clean again")
    assert op.full_scans() == 1


def test_a_deleted_object_becomes_missing(operator: Operator) -> None:
    op = operator
    op.kube.request("DELETE", resource_path("", "v1", "configmaps", NS, "settings"))
    wait_for(lambda: op.report_state(CONFIG_ID) == "Active", "a Missing report", timeout=20)
    assert op.reports()[CONFIG_ID]["spec"]["driftState"] == "missing"
    op.kube.request("POST", resource_path("", "v1", "configmaps", NS), body=config_map("strict"))
    wait_for(lambda: op.report_state(CONFIG_ID) == "Resolved", "resolved once it is back", timeout=20)
    assert op.full_scans() == 1


def test_a_watch_broken_with_410_recovers_without_losing_the_change(operator: Operator) -> None:
    op = operator
    wait_for(lambda: op.cluster.open_watches("deployments") == 1, "the operator's Deployment watch")
    # The API server goes away; meanwhile the Deployment is edited and the history compacted, so the
    # watch can only resume with 410 Gone, and must LIST to see the edit.
    op.cluster.refuse_watches()
    op.set_image("nginx:6.6.6")
    op.cluster.expire_history()
    op.cluster.refuse_watches(False)
    wait_for(lambda: op.report_state(DEPLOY_ID) == "Active", "the edit made while the watch was down",
             timeout=30)
    assert op.reports()[DEPLOY_ID]["spec"]["changes"][0]["live"] == "nginx:6.6.6"
    assert op.full_scans() == 1


def test_a_deleted_policy_stops_its_watches(operator: Operator) -> None:
    op = operator
    wait_for(lambda: op.cluster.open_watches("deployments") == 1 and op.cluster.open_watches("configmaps") == 1,
             "one watch per kind the policy declares")
    op.custom.delete_namespaced_custom_object(GROUP, VERSION, NS, "driftpolicies", "app")
    wait_for(lambda: op.cluster.open_watches("deployments") == 0 and op.cluster.open_watches("configmaps") == 0,
             "the watches closed with the policy")
    op.set_image("nginx:9.9.9")
    wait_for(lambda: op.cluster.get(f"{GROUP}/{VERSION}", "DriftPolicy", NS, "app") is None, "the policy gone")
    assert op.reports() == {}


def test_an_autoscaler_created_live_takes_the_replicas_out_of_the_comparison(operator: Operator) -> None:
    op = operator
    op.kube.request("PATCH", resource_path("apps", "v1", "deployments", NS, NAME),
                    body={"spec": {"replicas": 7}}, content_type="application/merge-patch+json")
    wait_for(lambda: op.report_state(DEPLOY_ID) == "Active", "the scaling drift", timeout=20)
    assert [c["category"] for c in op.reports()[DEPLOY_ID]["spec"]["changes"]] == ["Scaling"]
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "web", "namespace": NS},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
                    "minReplicas": 2, "maxReplicas": 10}}
    op.kube.request("POST", resource_path("autoscaling", "v2", "horizontalpodautoscalers", NS), body=hpa)
    wait_for(lambda: op.report_state(DEPLOY_ID) == "Resolved", "replicas an autoscaler owns are no drift",
             timeout=20)
    assert op.full_scans() == 1


def test_an_autoscaler_the_policy_declares_is_the_context_of_live_changes(operator: Operator) -> None:
    op = operator
    hpa = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
           "metadata": {"name": "web", "namespace": NS},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
                    "minReplicas": 2, "maxReplicas": 10, "targetCPUUtilizationPercentage": 80}}
    op.cluster.seed(hpa)
    op.git.commit(NS, {"apps/hpa.yaml": yaml.safe_dump(hpa)}, "autoscale the deployment")
    op.custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "driftpolicies", "app",
                                             {"metadata": {"annotations": {"kubedrift.dev/scan-requested-at": "1"}}})
    wait_for(lambda: op.full_scans() == 2 and op.status().get("resources") == 3, "a scan of the new commit")
    time.sleep(1.5)  # the new autoscaler watch's first events are handled: the edits below come alone
    # The autoscaler owns the replicas: a scale by hand is no drift, but the image set with it is.
    op.kube.request("PATCH", resource_path("apps", "v1", "deployments", NS, NAME),
                    body={"spec": {"replicas": 7}}, content_type="application/merge-patch+json")
    op.set_image("nginx:9.9.9")
    wait_for(lambda: op.report_state(DEPLOY_ID) == "Active", "the image drift", timeout=20)
    assert [c["category"] for c in op.reports()[DEPLOY_ID]["spec"]["changes"]] == ["VersionChange"]
    assert op.full_scans() == 2
