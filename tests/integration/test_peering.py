"""The operator creates its own kopf peering object (cluster/peering.py), against the API emulator over HTTP:
created when absent, an existing one (another replica's, or an older install's) taken as it is, and a
missing peering CRD a clear error."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.support.emulator import EmulatorServer

from kubedrift.cluster.client import KubeClient
from kubedrift.cluster.peering import Peering, PeeringError, ensure_peering

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def emulator() -> Iterator[EmulatorServer]:
    server = EmulatorServer().start()
    try:
        yield server
    finally:
        server.stop()


def _client(emulator: EmulatorServer, tmp_path: Path) -> KubeClient:
    return KubeClient.from_environment(str(emulator.write_kubeconfig(tmp_path / "kubeconfig")))


@pytest.mark.parametrize("namespace", [None, "team-a"])
def test_created_once_then_found(emulator: EmulatorServer, tmp_path: Path, namespace: str | None) -> None:
    emulator.install_peering(REPO)
    client = _client(emulator, tmp_path)
    peering = Peering("kubedrift", namespace)
    kind = "KopfPeering" if namespace else "ClusterKopfPeering"
    assert emulator.get("kopf.dev/v1", kind, namespace, "kubedrift") is None

    assert ensure_peering(client, peering) is True
    created = emulator.get("kopf.dev/v1", kind, namespace, "kubedrift")
    assert created is not None and created["metadata"]["labels"] == {"app.kubernetes.io/name": "kubedrift"}
    # A second replica (or a restart) meets the 409 and goes on with the same object.
    assert ensure_peering(client, peering) is False
    assert emulator.get("kopf.dev/v1", kind, namespace, "kubedrift") == created


def test_an_object_someone_else_made_is_kept(emulator: EmulatorServer, tmp_path: Path) -> None:
    emulator.install_peering(REPO)
    emulator.seed({"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
                   "metadata": {"name": "kubedrift", "labels": {"owner": "platform"}}})
    assert ensure_peering(_client(emulator, tmp_path), Peering("kubedrift")) is False
    kept = emulator.get("kopf.dev/v1", "ClusterKopfPeering", None, "kubedrift")
    assert kept is not None and kept["metadata"]["labels"] == {"owner": "platform"}


@pytest.mark.parametrize(("namespace", "crd"), [(None, "clusterkopfpeerings.kopf.dev"),
                                                ("team-a", "kopfpeerings.kopf.dev")])
def test_a_missing_peering_crd_is_an_error_naming_it(emulator: EmulatorServer, tmp_path: Path,
                                                     namespace: str | None, crd: str) -> None:
    with pytest.raises(PeeringError) as raised:
        ensure_peering(_client(emulator, tmp_path), Peering("kubedrift", namespace))
    assert f"the peering CRD {crd} is not installed" in raised.value.message
    assert "deploy/peering.yaml" in raised.value.message and "--standalone" in raised.value.message
