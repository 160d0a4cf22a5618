"""Validate a DriftPolicy document against the DriftPolicy CRD's own openAPIV3Schema.

The CRD (crds/driftpolicy.yaml, shipped in the package as kubedrift/crds/driftpolicy.yaml) is the
one source of truth. Its structural schema is read as the API server reads it: unknown fields
are errors (kubectl's strict field validation), `nullable` admits null, a null field that is not
nullable counts as absent, `x-kubernetes-int-or-string` admits both. CEL rules
(`x-kubernetes-validations`), formats and defaults are left to the API server.

Messages name the field (`spec.ignoreDifferences[0].jsonPointer: unknown field`) and never echo
the value they reject.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Iterator
from importlib import resources
from typing import Any

import jsonschema
import yaml

from kubedrift.model import GROUP
from kubedrift.policy import PolicyError

CRD_RESOURCE = "crds/driftpolicy.yaml"
_STRUCTURAL_CHILDREN = ("properties", "additionalProperties", "items")
_MAX_PROBLEMS = 20


class PolicySchemaError(PolicyError):
    """The policy does not validate; `problems` holds one message per invalid field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def strict_schema(node: Any) -> Any:
    """A JSON Schema (draft 4, as OpenAPI 3.0) for one structural-schema node."""
    if not isinstance(node, dict):
        return node
    out = dict(node)
    for child in _STRUCTURAL_CHILDREN:
        value = out.get(child)
        if child == "properties" and isinstance(value, dict):
            out[child] = {name: strict_schema(sub) for name, sub in value.items()}
        elif isinstance(value, dict):
            out[child] = strict_schema(value)
    open_ended = "additionalProperties" in out or out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and not open_ended:
        out["additionalProperties"] = False
    if out.get("x-kubernetes-int-or-string") and "type" not in out:
        out["type"] = ["integer", "string"]
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


@functools.cache
def _crd() -> dict[str, Any]:
    text = resources.files("kubedrift").joinpath(CRD_RESOURCE).read_text(encoding="utf-8")
    crd = yaml.safe_load(text)
    if not isinstance(crd, dict):
        raise RuntimeError(f"{CRD_RESOURCE} is not a CustomResourceDefinition")
    return crd


def served_versions() -> list[str]:
    return [str(v["name"]) for v in _crd()["spec"]["versions"] if v.get("served", True)]


@functools.cache
def _validator(version: str, require_source: bool) -> jsonschema.Draft4Validator:
    entry = next(v for v in _crd()["spec"]["versions"] if v["name"] == version)
    schema = strict_schema(entry["schema"]["openAPIV3Schema"])
    if not require_source:  # the CLI brings its own manifests: spec.source is optional there
        spec = dict(schema["properties"]["spec"])
        spec["required"] = [r for r in spec.get("required", []) if r != "source"]
        schema["properties"] = {**schema["properties"], "spec": spec}
    return jsonschema.Draft4Validator(schema)


def _without_nulls(value: Any) -> Any:
    """The API server drops a null field that is not nullable before validating: so does this."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def field_path(parts: Iterable[Any]) -> str:
    """`spec.ignoreDifferences[0].jqPathExpressions[1]` from the path components."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _messages(error: jsonschema.ValidationError) -> Iterator[str]:
    path = field_path(error.absolute_path)
    keyword = error.validator
    expected: Any = error.validator_value
    schema = error.schema if isinstance(error.schema, dict) else {}
    if keyword == "additionalProperties" and isinstance(error.instance, dict):
        known = list(schema.get("properties") or {})
        for name in sorted(set(error.instance) - set(known), key=str):
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known fields: {', '.join(known)})"
            yield f"{_join(path, str(name))}: unknown field{hint}"
    elif keyword == "required" and isinstance(error.instance, dict):
        for name in expected:
            if name not in error.instance:
                yield f"{_join(path, name)}: required field is missing"
    elif keyword == "type":
        types = expected if isinstance(expected, list) else [expected]
        yield f"{path or '(document)'}: must be of type {' or '.join(types)}"
    elif keyword == "enum":
        yield f"{path}: must be one of {', '.join(map(str, expected))}"
    elif keyword == "pattern":
        yield f"{path}: does not match the pattern {expected}"
    elif keyword == "minLength" and expected == 1:
        yield f"{path}: must not be empty"
    else:
        yield f"{path or '(document)'}: fails the schema's {keyword} rule ({expected})"


def validate_policy(body: Any, *, require_source: bool = True) -> dict[str, Any]:
    """The policy as the API server would keep it (null fields dropped), or PolicySchemaError
    naming every invalid field."""
    if not isinstance(body, dict):
        raise PolicySchemaError(["(document): a DriftPolicy must be a mapping"])
    api_version = body.get("apiVersion")
    versions = served_versions()
    if api_version not in {f"{GROUP}/{v}" for v in versions}:
        expected = " or ".join(f"{GROUP}/{v}" for v in versions)
        raise PolicySchemaError([f"apiVersion: must be {expected}"])
    if body.get("kind") != "DriftPolicy":
        raise PolicySchemaError(["kind: must be DriftPolicy"])
    validator = _validator(api_version.partition("/")[2], require_source)
    problems: list[str] = []
    try:
        document: dict[str, Any] = _without_nulls(body)
        errors = sorted(
            validator.iter_errors(document),
            key=lambda e: [(1, 0, str(p)) if isinstance(p, str) else (0, p, "") for p in e.absolute_path],
        )
    except RecursionError:
        raise PolicySchemaError(["(document): nested too deeply"]) from None
    for error in errors:
        problems.extend(m for m in _messages(error) if m not in problems)
    if problems:
        if len(problems) > _MAX_PROBLEMS:
            problems = [*problems[:_MAX_PROBLEMS], f"... and {len(problems) - _MAX_PROBLEMS} more problems"]
        raise PolicySchemaError(problems)
    return document
