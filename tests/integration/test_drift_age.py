"""Drift age counts from the earliest attributed change (SPEC §2 Attribution), not from the first scan."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.support.drifts import drift
from tests.support.emulator import EmulatorServer
from tests.support.outcomes import Scans

from kubedrift.cluster.client import KubeClient
from kubedrift.publish.reports import ReportPublisher

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_report_first_seen_is_the_earliest_change_time(tmp_path: Path) -> None:
    server = EmulatorServer().start()
    try:
        server.register_crd_file(ROOT / "crds" / "driftreport.yaml")
        client = KubeClient.from_environment(str(server.write_kubeconfig(tmp_path / "kubeconfig")), timeout=10)
        publisher = ReportPublisher(client)
        scans = Scans("ops", "shop")
        edited = drift("Deployment", "shop", "web")
        edited.since = "2026-01-03T12:00:00Z"  # a kubectl edit in January, first scanned in March
        unknown = drift("Deployment", "shop", "api")  # no managedFields time: age counts from this scan
        publisher.sync(scans.scan(edited, unknown, at=NOW), publisher.ledger(scans.policy))

        def first_seen() -> dict[str, str]:
            return {r["spec"]["resourceId"]: r["spec"]["firstSeen"]
                    for r in publisher.ledger(scans.policy).reports.values()}

        assert first_seen() == {
            "Deployment:shop:web": "2026-01-03T12:00:00Z",
            "Deployment:shop:api": "2026-03-01T12:00:00Z",
        }
        # The next scan keeps it, reading it back from the reports.
        ledger = publisher.ledger(scans.policy)
        scans.active = ledger.active()
        publisher.sync(scans.scan(edited, unknown, at=NOW.replace(hour=13)), ledger)
        assert first_seen() == {
            "Deployment:shop:web": "2026-01-03T12:00:00Z",
            "Deployment:shop:api": "2026-03-01T12:00:00Z",
        }
    finally:
        server.stop()
