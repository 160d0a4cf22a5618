"""Scans that cannot read everything never lie (issue 9): `kubedrift run` as a real process with MongoDB,
against the API emulator. When one kind cannot be listed (403) or one manifest file breaks, the drift
of what was not compared stays exactly as it was in DriftReports, MongoDB records and metrics, and the
policy state is Error (2) in the metric as in the status; once readable again, nothing resolves that
did not change."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
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

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kubedrift.dev", "v1alpha1"
NS = "partial"
POLICY_ID = f"{NS}/app"
DEPLOY_LIVE = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-live.yaml"
DEPLOY_GIT = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-config.yaml"
DEPLOY_ID = f"Deployment:{NS}:nginx-deployment"
CONFIG_ID = f"ConfigMap:{NS}:settings"
_requests = itertools.count(1)


def config_map(mode: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": NS},
            "data": {"mode": mode}}


@dataclass
class Operator:
    cluster: EmulatorServer
    git: GitHttpServer
    base: str
    db: Any
    custom: Any

    def scan(self) -> dict[str, Any]:
        """Ask for a scan and wait until it has been handled; the policy's status after it."""
        value = f"request-{next(_requests)}"
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, "driftpolicies", "app",
            {"metadata": {"annotations": {"kubedrift.dev/scan-requested-at": value}}})

        def handled() -> dict[str, Any] | None:
            status = self.custom.get_namespaced_custom_object(GROUP, VERSION, NS, "driftpolicies", "app").get(
                "status", {})
            return status if status.get("lastHandledScanRequest") == value else None

        status: dict[str, Any] = wait_for(handled, f"a scan handling {value}",
                                          retry_on=(kubernetes.client.ApiException,))
        # History is written off the scan path: wait until the scan is in MongoDB (the Deployment is
        # compared in every scan here, so its record carries the scan's time).
        scanned_at = datetime.fromisoformat(status["lastScanTime"].replace("Z", "+00:00"))
        wait_for(lambda: self.records()[DEPLOY_ID]["lastScanAt"] >= scanned_at, "the scan in MongoDB")
        return status

    def reports(self) -> dict[str, dict[str, Any]]:
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, NS, "driftreports")["items"]
        return {r["spec"]["resourceId"]: r for r in items}

    def records(self) -> dict[str, dict[str, Any]]:
        return {r["resourceId"]: r for r in self.db.drift_records.find({"policy": POLICY_ID})}

    def events(self) -> list[tuple[str, str]]:
        return sorted((e["resourceId"], e["type"]) for e in self.db.drift_events.find({"policy": POLICY_ID}))

    def metrics(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        text = requests.get(self.base + "/metrics", timeout=10).text
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return out

    def state_metric(self) -> float:
        return next(v for labels, v in self.metrics()["kubedrift_policy_state"]
                    if labels == {"policy": "app", "namespace": NS})

    def first_seen_series(self) -> dict[str, float]:
        return {f"{labels['kind']}:{labels['resource_namespace']}:{labels['name']}": v
                for labels, v in self.metrics().get("kubedrift_drift_first_seen_timestamp_seconds", [])
                if labels["policy"] == "app"}

    def counter(self, name: str) -> float:
        return sum(v for labels, v in self.metrics().get(name, []) if labels.get("policy") == "app")


@pytest.fixture()
def operator(tmp_path: Path, mongo_uri: str) -> Iterator[Operator]:  # noqa: F811
    cluster = EmulatorServer().start()
    try:
        cluster.install_crds(REPO)
        cluster.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        live = in_ns(load_one(DEPLOY_LIVE), NS)
        live["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:9.9.9"  # a hand edit
        cluster.seed(live)
        cluster.seed(config_map("lenient"))  # Git says strict
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
                yield Operator(cluster, git, base, db, custom)
    finally:
        cluster.stop()


def _what_stays(op: Operator) -> dict[str, Any]:
    """Everything published about the two drifts that must not move while they are not compared."""
    reports = op.reports()
    records = op.records()
    return {
        "reports": {rid: (r["status"]["state"], r["spec"]["firstSeen"]) for rid, r in reports.items()},
        "records": {rid: (r["state"], r["firstSeen"], r["episode"]) for rid, r in records.items()},
        "series": op.first_seen_series(),
        "detected": op.counter("kubedrift_drifts_detected_total"),
        "resolved": op.counter("kubedrift_drifts_resolved_total"),
    }


def _config_report_version(op: Operator) -> str:
    return str(op.reports()[CONFIG_ID]["metadata"]["resourceVersion"])


def _first_scan(op: Operator) -> dict[str, Any]:
    wait_for(lambda: len(op.records()) == 2 and len(op.first_seen_series()) == 2, "both drifts everywhere")
    before = _what_stays(op)
    assert set(before["reports"]) == {DEPLOY_ID, CONFIG_ID}
    assert all(state == "Active" for state, _ in before["reports"].values())
    assert all(state == "active" and episode == 1 for state, _, episode in before["records"].values())
    assert before["detected"] == 2 and before["resolved"] == 0
    assert op.state_metric() == 1
    return before


def test_a_kind_turning_forbidden_keeps_its_drift_and_sets_error(operator: Operator) -> None:
    op = operator
    before = _first_scan(op)

    version = _config_report_version(op)
    op.cluster.forbid("", "configmaps")
    status = op.scan()
    assert _config_report_version(op) == version  # not even rewritten
    assert status["state"] == "Error"
    assert any("ConfigMap" in e["file"] and "403" in e["message"] for e in status["errors"]), status
    assert op.state_metric() == 2  # the metric says what the status says
    assert status["drifted"] == 2  # the ConfigMap's drift is still active, only not compared now
    assert _what_stays(op) == before
    assert op.events() == [(CONFIG_ID, "detected"), (DEPLOY_ID, "detected")]

    op.cluster.allow("", "configmaps")
    status = op.scan()
    assert status["state"] == "Drifted" and op.state_metric() == 1
    assert _what_stays(op) == before  # nothing resolved, nothing detected anew, same episodes
    assert op.events() == [(CONFIG_ID, "detected"), (DEPLOY_ID, "detected")]

    # A real fix still resolves, everywhere at once.
    op.cluster.seed(config_map("strict"))
    op.scan()
    assert op.reports()[CONFIG_ID]["status"]["state"] == "Resolved"
    assert op.records()[CONFIG_ID]["state"] == "resolved"
    assert set(op.first_seen_series()) == {DEPLOY_ID}
    assert op.counter("kubedrift_drifts_resolved_total") == 1


def test_a_broken_manifest_file_keeps_the_drift_it_declared(operator: Operator) -> None:
    op = operator
    before = _first_scan(op)

    version = _config_report_version(op)
    op.git.commit(NS, {"apps/configmap.yaml": "kind: ConfigMap\nmetadata: [unclosed\n"}, "break the file")
    status = op.scan()
    assert _config_report_version(op) == version  # not even rewritten (the others get the new revision)
    assert status["state"] == "Error"
    assert any("configmap.yaml" in e["file"] for e in status["errors"]), status
    assert op.state_metric() == 2
    assert _what_stays(op) == before
    assert op.records()[CONFIG_ID]["resolution"] is None  # not "no longer declared"

    op.git.commit(NS, {"apps/configmap.yaml": yaml.safe_dump(config_map("strict"))}, "repair the file")
    status = op.scan()
    assert status["state"] == "Drifted" and op.state_metric() == 1
    assert _what_stays(op) == before
    assert op.events() == [(CONFIG_ID, "detected"), (DEPLOY_ID, "detected")]

