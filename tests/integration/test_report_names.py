"""DriftReport names are short (`<kind>-<name>-<hash8>`), and an upgrade from the older naming
(`<policy>-<kind>-<namespace>-<name>-<hash8>`) leaves one report per resource: an old-named report is
replaced by the new one when its drift is written again, resolves in place, or stays as it was while its
resource is not compared. Real ReportPublisher against the API emulator over HTTP."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.drifts import drift
from tests.support.emulator import EmulatorServer
from tests.support.outcomes import Scans

from kubedrift.cluster.client import KubeClient
from kubedrift.publish.reports import ReportPublisher, report_name

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
JANUARY = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
MARCH = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def legacy_name(policy: str, resource_id: str) -> str:
    """The report name of release 0.1 (publish/reports.py before the short names), for the upgrade case."""
    kind, namespace, name = [*resource_id.split(":", 2), "", ""][:3]
    readable = "-".join(p for p in (policy, kind, namespace or "cluster", name) if p)
    readable = re.sub(r"[^a-z0-9-]+", "-", readable.lower()).strip("-")[:200].rstrip("-")
    digest = hashlib.sha256(f"{policy}\0{resource_id}".encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


@pytest.fixture()
def server() -> Iterator[EmulatorServer]:
    emulator = EmulatorServer().start()
    try:
        emulator.register_crd_file(ROOT / "crds" / "driftreport.yaml")
        yield emulator
    finally:
        emulator.stop()


def _publisher(server: EmulatorServer, tmp_path: Path) -> ReportPublisher:
    return ReportPublisher(KubeClient.from_environment(str(server.write_kubeconfig(tmp_path / "kubeconfig")),
                                                      timeout=10))


def _rename(server: EmulatorServer, publisher: ReportPublisher, old: str, new: str, namespace: str) -> None:
    """What an older release left: the same report under another name."""
    report = server.get("kubedrift.dev/v1alpha1", "DriftReport", namespace, old)
    assert report is not None
    publisher._client.request("DELETE", publisher._path(namespace, old))
    meta = {k: v for k, v in report["metadata"].items() if k in ("namespace", "labels", "ownerReferences")}
    server.seed({**report, "metadata": {**meta, "name": new}})


def _by_resource(publisher: ReportPublisher, scans: Scans) -> dict[str, list[tuple[str, str, str]]]:
    found: dict[str, list[tuple[str, str, str]]] = {}
    for name, report in publisher.ledger(scans.policy).reports.items():
        found.setdefault(report["spec"]["resourceId"], []).append(
            (name, report["status"]["state"], report["spec"]["firstSeen"]))
    return found


def test_names_are_short_and_leave_out_the_policy_namespace() -> None:
    scans = Scans("shop", "apps")
    name = report_name(scans.policy, "Deployment:shop:checkout-service")
    assert re.fullmatch(r"deployment-checkout-service-[0-9a-f]{8}", name)
    assert re.fullmatch(r"deployment-payments-checkout-service-[0-9a-f]{8}",
                        report_name(scans.policy, "Deployment:payments:checkout-service"))
    assert re.fullmatch(r"clusterrole-system-aggregate-to-view-[0-9a-f]{8}",
                        report_name(scans.policy, "ClusterRole::system:aggregate-to-view"))
    assert len(name) == len(legacy_name("apps", "Deployment:shop:checkout-service")) - len("apps-shop-")


def test_an_upgrade_leaves_one_report_per_resource(server: EmulatorServer, tmp_path: Path) -> None:
    publisher = _publisher(server, tmp_path)
    scans = Scans("ops", "shop")
    web, api = drift("Deployment", "shop", "web"), drift("Deployment", "shop", "api")
    cfg = drift("ConfigMap", "shop", "cfg")
    publisher.sync(scans.scan(web, api, cfg, at=JANUARY), publisher.ledger(scans.policy))
    for resource in (web, api, cfg):  # the reports as the older release named them
        _rename(server, publisher, report_name(scans.policy, resource.id), legacy_name("shop", resource.id), "ops")

    # The operator is upgraded: web still drifts, api was fixed, cfg could not be read this time.
    ledger = publisher.ledger(scans.policy)
    scans.active = ledger.active()
    publisher.sync(scans.scan(web, at=MARCH, unread={cfg.id: "forbidden"}), ledger)

    assert _by_resource(publisher, scans) == {
        web.id: [(report_name(scans.policy, web.id), "Active", "2026-01-05T09:00:00Z")],  # renamed, age kept
        api.id: [(legacy_name("shop", api.id), "Resolved", "2026-01-05T09:00:00Z")],  # resolved in place
        cfg.id: [(legacy_name("shop", cfg.id), "Active", "2026-01-05T09:00:00Z")],  # not compared: untouched
    }
    # cfg drifts again once it is read: it moves to its new name, still one report, same age.
    ledger = publisher.ledger(scans.policy)
    scans.active = ledger.active()
    publisher.sync(scans.scan(web, cfg, at=MARCH.replace(hour=13)), ledger)
    found = _by_resource(publisher, scans)
    assert found[cfg.id] == [(report_name(scans.policy, cfg.id), "Active", "2026-01-05T09:00:00Z")]
    assert all(len(reports) == 1 for reports in found.values())


def test_a_resource_reported_under_both_names_keeps_the_new_one_and_the_earliest_age(
        server: EmulatorServer, tmp_path: Path) -> None:
    publisher = _publisher(server, tmp_path)
    scans = Scans("ops", "shop")
    web = drift("Deployment", "shop", "web")
    publisher.sync(scans.scan(web, at=JANUARY), publisher.ledger(scans.policy))
    old = server.get("kubedrift.dev/v1alpha1", "DriftReport", "ops", report_name(scans.policy, web.id))
    assert old is not None
    # Two replicas of different releases both wrote: the old one in January, the new one in March.
    server.seed({**old, "metadata": {**old["metadata"], "name": legacy_name("shop", web.id)}})
    later: dict[str, Any] = {**old, "spec": {**old["spec"], "firstSeen": "2026-03-01T12:00:00Z"}}
    server.seed(later)

    ledger = publisher.ledger(scans.policy)
    assert ledger.active()[web.id].first_seen == JANUARY
    scans.active = ledger.active()
    publisher.sync(scans.scan(web, at=MARCH), ledger)
    assert _by_resource(publisher, scans) == {
        web.id: [(report_name(scans.policy, web.id), "Active", "2026-01-05T09:00:00Z")]}
