"""DriftPolicy documents validated against the CRD's own openAPIV3Schema (kubedrift.policy_schema)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kubedrift.policy_schema import PolicySchemaError, strict_schema, validate_policy

REPO = Path(__file__).resolve().parents[2]


def _example() -> dict[str, Any]:
    docs = yaml.safe_load_all((REPO / "examples" / "driftpolicy.yaml").read_text())
    return next(d for d in docs if d and d.get("kind") == "DriftPolicy")


def _problems(body: Any, *, require_source: bool = True) -> list[str]:
    with pytest.raises(PolicySchemaError) as caught:
        validate_policy(body, require_source=require_source)
    return caught.value.problems


def test_packaged_schema_is_the_repository_crd() -> None:
    packaged = REPO / "operator" / "kubedrift" / "crds" / "driftpolicy.yaml"
    # one copy in git: the package holds a symlink to crds/, the wheel a copy of the file
    assert packaged.is_symlink() and packaged.resolve() == (REPO / "crds" / "driftpolicy.yaml").resolve()


def test_example_policy_validates_and_comes_back_unchanged() -> None:
    policy = _example()
    assert validate_policy(policy) == policy


def test_every_problem_is_reported_with_its_field_path() -> None:
    policy = _example()
    policy["spec"]["ignoreDiferences"] = []
    policy["spec"]["source"]["revison"] = "main"
    policy["spec"]["severityOverrides"] = [{"kind": "Deployment", "severity": "urgent"}, {"kind": "Service"}]
    policy["spec"]["suspend"] = "yes"
    del policy["spec"]["source"]["repoURL"]
    assert _problems(policy) == [
        "spec.ignoreDiferences: unknown field (did you mean ignoreDifferences?)",
        "spec.severityOverrides[0].severity: must be one of low, medium, high, critical",
        "spec.severityOverrides[1].severity: required field is missing",
        "spec.source.repoURL: required field is missing",
        "spec.source.revison: unknown field (did you mean revision?)",
        "spec.suspend: must be of type boolean",
    ]


def test_source_is_required_by_the_operator_not_by_the_cli() -> None:
    policy = _example()
    del policy["spec"]["source"]
    assert _problems(policy) == ["spec.source: required field is missing"]
    assert validate_policy(policy, require_source=False) == policy


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "(document): a DriftPolicy must be a mapping"),
        (
            {"apiVersion": "kubedrift.dev/v1", "kind": "DriftPolicy", "spec": {}},
            "apiVersion: must be kubedrift.dev/v1alpha1",
        ),
        ({"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftReport", "spec": {}}, "kind: must be DriftPolicy"),
        ({"apiVersion": "kubedrift.dev/v1alpha1", "kind": "DriftPolicy"}, "spec: required field is missing"),
    ],
)
def test_wrong_document(body: Any, problem: str) -> None:
    assert _problems(body, require_source=False) == [problem]


def test_null_fields_count_as_absent_as_on_the_api_server() -> None:
    policy = _example()
    policy["spec"]["ignoreDifferences"] = None
    policy["spec"]["target"] = {"namespaces": None}
    cleaned = validate_policy(policy)
    assert "ignoreDifferences" not in cleaned["spec"] and cleaned["spec"]["target"] == {}


def test_messages_never_echo_the_rejected_value() -> None:
    policy = _example()
    policy["spec"]["interval"] = "hunter2-secret-ish"
    policy["spec"]["severityOverrides"] = [{"severity": "hunter2-secret-ish"}]
    text = "; ".join(_problems(policy))
    assert "spec.interval" in text and "hunter2" not in text


# The CRD will grow descriptions, CEL rules and other x-kubernetes-* keys: the conversion keeps
# the structural meaning (unknown fields rejected) and leaves the rest to the API server.
RICH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "A policy.",
    "x-kubernetes-validations": [{"rule": "self.a != 'forbidden'", "message": "CEL is the API server's job"}],
    "properties": {
        "a": {"type": "string", "description": "A string.", "nullable": True},
        "port": {"x-kubernetes-int-or-string": True},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "free": {
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {"k": {"type": "integer"}},
        },
        "items": {
            "type": "array",
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
        },
        "choice": {
            "type": "object",
            "properties": {"x": {"type": "string"}, "y": {"type": "string"}},
            "oneOf": [{"required": ["x"]}, {"required": ["y"]}],
        },
        "meta": {"type": "object"},
        "count": {"type": "integer", "format": "int64", "minimum": 0, "exclusiveMinimum": True},
    },
}


def _valid(instance: Any) -> bool:
    return jsonschema.Draft4Validator(strict_schema(RICH_SCHEMA)).is_valid(instance)


def test_conversion_accepts_what_a_valid_crd_schema_allows() -> None:
    assert _valid(
        {
            "a": None,
            "port": "http",
            "labels": {"any": "thing"},
            "free": {"k": 1, "unknown": {"deep": True}},
            "items": [{"name": "one"}],
            "choice": {"x": "1"},
            "meta": {"anything": ["goes"]},
            "count": 3,
        }
    )
    assert _valid({"a": "forbidden", "port": 8080})  # CEL is not evaluated here


@pytest.mark.parametrize(
    "instance",
    [
        {"b": 1},  # unknown at the root
        {"items": [{"name": "one", "nmae": "typo"}]},  # unknown in a list item
        {"free": {"k": "not an int"}},
        {"port": 1.5},
        {"labels": {"x": 1}},
        {"choice": {"x": "1", "z": "2"}},
        {"choice": {"x": "1", "y": "2"}},  # oneOf still applies
        {"count": 0},  # exclusiveMinimum, OpenAPI 3.0 (boolean) style
        {"a": 5},
    ],
)
def test_conversion_rejects_what_the_crd_schema_rejects(instance: dict[str, Any]) -> None:
    assert not _valid(instance)


def test_conversion_does_not_touch_the_input() -> None:
    before = copy.deepcopy(RICH_SCHEMA)
    strict_schema(RICH_SCHEMA)
    assert before == RICH_SCHEMA


def test_hostile_nesting_is_a_clear_error_not_a_crash() -> None:
    policy = _example()
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    policy["spec"]["ignoreDifferences"] = deep
    assert _problems(policy) == ["(document): nested too deeply"]
