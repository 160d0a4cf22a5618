"""Report names/labels and the readiness state of the health server."""

from __future__ import annotations

import json
import re

from aiohttp.test_utils import TestClient, TestServer

from kubedrift.model import PolicyRef
from kubedrift.publish.health import DEPENDENCY_MESSAGES, Readiness, create_app
from kubedrift.publish.reports import label_value, report_name

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
LABEL = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


def test_report_names_are_deterministic_valid_and_distinct() -> None:
    prod = PolicyRef("platform", "prod")
    a = report_name(prod, "ClusterRole::system:aggregate-to-view")
    assert a == report_name(prod, "ClusterRole::system:aggregate-to-view")
    assert DNS_SUBDOMAIN.match(a) and len(a) <= 253
    assert re.fullmatch(r"clusterrole-system-aggregate-to-view-[0-9a-f]{8}", a)
    # Names that sanitize alike still differ by their hash, as do two policies' reports of one object.
    p = PolicyRef("ns", "p")
    assert report_name(p, "ConfigMap:a:b-c") != report_name(p, "ConfigMap:a-b:c")
    assert report_name(p, "ConfigMap:ns:b") != report_name(PolicyRef("ns", "q"), "ConfigMap:ns:b")
    long = report_name(PolicyRef("n" * 63, "p" * 60), "Deployment:" + "n" * 63 + ":" + "x" * 250)
    assert DNS_SUBDOMAIN.match(long) and len(long) <= 253
    odd = report_name(p, ":ns:..")  # nothing readable left: the hash alone
    assert DNS_SUBDOMAIN.match(odd) and len(odd) == 8


def test_label_values_fit_kubernetes_rules() -> None:
    assert label_value("web") == "web"
    assert label_value("system:aggregate-to-view") == "system-aggregate-to-view"
    long = label_value("x" * 100)
    assert len(long) <= 63 and LABEL.match(long)
    assert long != label_value("x" * 101)


async def test_readyz_follows_readiness_and_degraded_reasons() -> None:
    readiness = Readiness()
    async with TestClient(TestServer(create_app(readiness))) as client:
        assert (await client.get("/healthz")).status == 200
        answer = await client.get("/readyz")
        assert answer.status == 503 and (await answer.json())["status"] == "not ready"
        readiness.mark_ready()
        assert await (await client.get("/readyz")).json() == {"status": "ok"}
        readiness.degrade("mongodb", "connection refused by mongo-0.mongo:27017 for user ops")
        readiness.degrade("kubernetes", "403 Forbidden: secrets \"db-password\" is forbidden")
        answer = await client.get("/readyz")
        assert answer.status == 200
        body = await answer.json()
        assert body["status"] == "degraded" and body["degraded"] == ["kubernetes", "mongodb"]
        assert body["reasons"] == {n: DEPENDENCY_MESSAGES[n] for n in ("kubernetes", "mongodb")}
        text = json.dumps(body)
        assert "refused" not in text and "mongo-0" not in text and "db-password" not in text
        readiness.recover("mongodb")
        readiness.recover("kubernetes")
        assert await (await client.get("/readyz")).json() == {"status": "ok"}
