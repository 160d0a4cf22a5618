"""The CRDs' openAPIV3Schema (validated with jsonschema) accepts the example and rejects bad policies."""

from __future__ import annotations

import copy
import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from tests.support.outcomes import Scans

from kubedrift.model import (
    Category,
    Change,
    DriftState,
    PolicyRef,
    ResourceDrift,
    ResourceKey,
    ResourceRef,
    Severity,
)
from kubedrift.policy import DURATION_PATTERN, parse_policy
from kubedrift.publish.reports import report_spec
from kubedrift.publish.status import ScanStatus, build_status

REPO = Path(__file__).resolve().parents[2]


def _crd(name: str) -> dict[str, Any]:
    crd: dict[str, Any] = yaml.safe_load((REPO / "crds" / name).read_text())
    return crd


def _validator(name: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(_crd(name)["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _example_policy() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((REPO / "examples" / "driftpolicy.yaml").read_text()) if d]
    return next(d for d in docs if d["kind"] == "DriftPolicy")


def test_example_policy_is_valid_and_parses() -> None:
    policy = _example_policy()
    assert list(_validator("driftpolicy.yaml").iter_errors(policy)) == []
    spec = parse_policy(policy)
    assert spec.source is not None and spec.source.secret_ref == "gitops-credentials"
    assert spec.interval_seconds == 300


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(body)
    node = body
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return body


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "complaint"),
    [
        ("spec.interval", "5 minutes", "does not match"),
        ("spec.interval", "10d", "does not match"),
        ("spec.source.repoURL", _DELETE, "'repoURL' is a required property"),
        ("spec.source", _DELETE, "'source' is a required property"),
        ("spec.source.secretRef", {"key": "x"}, "'name' is a required property"),
        ("spec.source.paths", ["/etc"], "does not match"),
        ("spec.suspend", "yes", "is not of type 'boolean'"),
        ("spec.severityOverrides", [{"severity": "urgent"}], "is not one of"),
        ("spec.severityOverrides", [{"category": "Scaling"}], "'severity' is a required property"),
        ("spec.severityOverrides", [{"severity": "low", "category": "Sizing"}], "is not one of"),
        ("spec.ignoreDifferences", [{"jsonPointers": ["spec/replicas"]}], "does not match"),
        ("spec.target.namespaces", "shop", "is not of type 'array'"),
    ],
)
def test_schema_rejects_invalid_policies(path: str, value: Any, complaint: str) -> None:
    broken = _set(_example_policy(), path, value)
    messages = [e.message for e in _validator("driftpolicy.yaml").iter_errors(broken)]
    assert any(complaint in m for m in messages), messages


def test_interval_pattern_is_the_parsers() -> None:
    schema = _crd("driftpolicy.yaml")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["properties"]["spec"]["properties"]["interval"]["pattern"] == DURATION_PATTERN


def test_crds_declare_status_short_names_and_columns() -> None:
    for name, columns in (
        ("driftpolicy.yaml", {"Revision", "State", "Drifted", "Highest", "Last Scan", "Age"}),
        ("driftreport.yaml", {"Policy", "Kind", "Resource Namespace", "Resource Name", "Severity", "Score",
                              "State", "First Seen", "Age"}),
    ):
        crd = _crd(name)
        assert crd["spec"]["group"] == "kubedrift.dev" and crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["shortNames"]
        version = crd["spec"]["versions"][0]
        assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
        assert {c["name"] for c in version["additionalPrinterColumns"]} == columns


def test_what_the_operator_writes_fits_the_schemas() -> None:
    now = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    drift = ResourceDrift(
        resource=ResourceRef("apps/v1", "Deployment", "shop", "web"),
        key=ResourceKey("apps", "Deployment", "shop", "web"),
        state=DriftState.DRIFTED, severity=Severity.HIGH, score=70,
        changes=[Change("spec.replicas", 2, 5, Category.SCALING, Severity.HIGH,
                        "kubectl-scale", "2026-01-01T00:00:00Z"),
                 Change("spec.template.spec.containers[name=web].env[name=DEBUG]", None, {"value": "1"},
                        Category.CONFIGURATION_CHANGE, Severity.MEDIUM)],
    )
    report = {"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftReport", "metadata": {"name": "r"},
              "spec": report_spec(PolicyRef("shop", "p", "uid"), drift, "abc123", "2026-01-02T03:04:05Z"),
              "status": {"state": "Active", "lastSeen": "2026-01-02T03:04:05Z"}}
    assert list(_validator("driftreport.yaml").iter_errors(report)) == []

    scans = Scans("shop", "p")
    status = build_status(ScanStatus(scans.scan(drift, at=now, revision="abc123"), generation=3,
                                     scan_request="r1"), {})
    policy = dict(_example_policy(), status=status)
    assert list(_validator("driftpolicy.yaml").iter_errors(policy)) == []
    assert status["state"] == "Drifted" and status["highestSeverity"] == "high"
    stalled = build_status(ScanStatus(scans.stall("GitError", at=now, message="cannot reach\nthe repo"),
                                      generation=3), status)
    assert list(_validator("driftpolicy.yaml").iter_errors(dict(policy, status=stalled))) == []
    stalled_condition = next(c for c in stalled["conditions"] if c["type"] == "Stalled")
    assert stalled_condition["message"] == "cannot reach the repo"
    assert stalled["revision"] == "abc123" and stalled["drifted"] == 1  # last known results stay
