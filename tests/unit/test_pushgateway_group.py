"""Which group `scan --pushgateway` pushes to, and how it names the gateway in messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubedrift.publish.pushgateway import Group, PushError, Pushgateway, redact


def _policy(tmp_path: Path, metadata: dict[str, str]) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "elsewhere"}},
        {"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftPolicy", "metadata": metadata, "spec": {}},
    ]))
    return str(path)


def test_the_policy_files_metadata_names_the_group(tmp_path: Path) -> None:
    policy = _policy(tmp_path, {"name": "shop", "namespace": "ops"})
    assert Group.for_scan(policy, "ignored", "ignored-too") == Group(policy="shop", namespace="ops")


def test_a_policy_without_namespace_takes_the_flag_then_default(tmp_path: Path) -> None:
    policy = _policy(tmp_path, {"name": "shop"})
    assert Group.for_scan(policy, None, "payments") == Group(policy="shop", namespace="payments")
    assert Group.for_scan(policy, None, None) == Group(policy="shop", namespace="default")


def test_without_a_policy_name_and_namespace_flags_then_defaults(tmp_path: Path) -> None:
    assert Group.for_scan(None, "nightly", "shop") == Group(policy="nightly", namespace="shop")
    assert Group.for_scan(None, None, None) == Group(policy="scan", namespace="default")
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: DriftPolicy\nmetadata: {name: [\n")
    assert Group.for_scan(str(broken), "nightly", None) == Group(policy="nightly", namespace="default")
    assert Group.for_scan(str(tmp_path / "absent.yaml"), None, None) == Group(policy="scan", namespace="default")


@pytest.mark.parametrize(("given", "base"), [
    ("127.0.0.1:9091", "http://127.0.0.1:9091"),
    ("https://push.example:443/prefix/", "https://push.example:443/prefix"),
    ("http://[::1]:9091", "http://[::1]:9091"),
])
def test_gateway_urls_as_push_to_gateway_reads_them(given: str, base: str) -> None:
    assert Pushgateway.at(given, Group("p", "ns")).base == base


def test_credentials_in_the_url_are_refused_without_showing_them() -> None:
    with pytest.raises(PushError) as raised:
        Pushgateway.at("https://ci:s3cret-token@push.example:9091", Group("p", "ns"))
    assert "s3cret-token" not in str(raised.value) and "https://push.example:9091" in str(raised.value)
    assert redact("http://user:pw@[::1]:9091/p") == "http://[::1]:9091/p"
