"""`kubedrift run` as a real process with MONGODB_URI: a hand edit becomes an active record, a metric
series and an API answer; the fix resolves all three; restarting the operator keeps the drift's age."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

import pymongo
import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.support.corpus import in_ns, load_one
from tests.support.emulator import EmulatorServer
from tests.support.git_http import serve_git_http
from tests.support.mongo import mongo_base_uri, mongo_uri  # noqa: F401
from tests.support.operator_process import running_operator, wait_for
from tests.support.ports import free_port
from tests.support.reviews import ADMIN, READER, ReviewingEmulator

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NS = "history"
DEPLOY_LIVE = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-live.yaml"
DEPLOY_GIT = "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-config.yaml"
RESOURCE_ID = f"Deployment:{NS}:nginx-deployment"
T = TypeVar("T")


def first_seen_series(base: str) -> list[tuple[dict[str, str], float]]:
    text = requests.get(base + "/metrics", timeout=10).text
    return [(dict(s.labels), s.value) for f in text_string_to_metric_families(text)
            for s in f.samples if s.name == "kubedrift_drift_first_seen_timestamp_seconds"]


def test_history_metrics_and_api_follow_the_operator(tmp_path: Path, mongo_uri: str) -> None:  # noqa: F811
    cluster = EmulatorServer()
    cluster.emulator = ReviewingEmulator()
    cluster.start()
    try:
        cluster.install_crds(REPO)
        cluster.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        live = in_ns(load_one(DEPLOY_LIVE), NS)
        live["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:9.9.9"  # a hand edit
        cluster.seed(live)
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        port = free_port()
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBEDRIFT_HTTP_PORT": str(port),
               "KUBEDRIFT_GIT_CACHE": str(tmp_path / "git-cache"), "MONGODB_URI": mongo_uri,
               "PYTHONUNBUFFERED": "1", "KUBEDRIFT_ALLOW_INSECURE_HTTP": "1"}  # the test serves git over http
        log = tmp_path / "operator.log"
        db = pymongo.MongoClient(mongo_uri, tz_aware=True).get_default_database()
        with serve_git_http(tmp_path / "git", username=None, password=None) as git:
            git.create_repo(NS, {"apps/deployment.yaml": yaml.safe_dump(in_ns(load_one(DEPLOY_GIT), NS))})
            policy = {"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftPolicy",
                      "metadata": {"namespace": NS, "name": "app"},
                      "spec": {"source": {"repoURL": git.url(NS), "revision": "main", "paths": ["apps"]},
                               "interval": "1h"}}
            cluster.seed(policy)

            with running_operator(["--git-timeout", "20s"], env, log, port) as base:
                record = wait_for(lambda: db.drift_records.find_one({"resourceId": RESOURCE_ID}),
                                  "the drift record in MongoDB")
                assert record["policy"] == f"{NS}/app" and record["state"] == "active"
                assert record["categories"] == ["VersionChange"]
                series = wait_for(lambda: first_seen_series(base), "the first-seen series")
                assert series[0][0]["name"] == "nginx-deployment" and series[0][0]["severity"] == "high"
                assert series[0][1] == pytest.approx(record["firstSeen"].timestamp(), abs=1.0)
                answer = requests.get(f"{base}/api/v1/drift-records/{RESOURCE_ID}", headers=READER, timeout=10)
                assert answer.status_code == 200 and answer.json()["state"] == "active"
                assert requests.get(f"{base}/api/v1/drift-records", timeout=10).status_code == 401
                first_seen = record["firstSeen"]

            # A fresh database (history lost) and a restarted operator: drift age comes from the DriftReport.
            db.drift_records.drop()
            db.drift_events.drop()
            with running_operator(["--git-timeout", "20s"], env, log, port) as base:
                again = wait_for(lambda: db.drift_records.find_one({"resourceId": RESOURCE_ID}),
                                 "the record after the restart")
                assert abs((again["firstSeen"] - first_seen).total_seconds()) < 1.0
                assert first_seen_series(base)[0][1] == pytest.approx(first_seen.timestamp(), abs=1.0)

                # Fix the live object, ask for a scan through the API: the record resolves, the series goes.
                fixed = in_ns(load_one(DEPLOY_LIVE), NS)
                cluster.seed(fixed)
                answer = requests.post(f"{base}/api/v1/analyze", params={"policy": f"{NS}/app"}, headers=ADMIN,
                                       timeout=10)
                assert answer.status_code == 202, answer.text
                resolved = wait_for(lambda: db.drift_records.find_one({"resourceId": RESOURCE_ID,
                                                                       "state": "resolved"}),
                                    "the record to resolve")
                assert resolved["resolvedAt"] >= resolved["firstSeen"]
                wait_for(lambda: not first_seen_series(base), "the first-seen series to go")
                stats = requests.get(f"{base}/api/v1/statistics", headers=READER, timeout=10).json()
                assert stats["resolved"] == 1 and stats["meanTimeToResolveSeconds"] >= 0
    finally:
        cluster.stop()
