"""Small builders for test objects and managedFields entries."""

from __future__ import annotations

import copy
from typing import Any

from kubedrift.diff.compare import compare_objects
from kubedrift.model import DiffSettings, KubeObject, ResourceDrift, ScanResult


def deployment(name: str = "web", namespace: str = "shop", **spec_overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "ghcr.io/example/web:1.0.0",
                            "ports": [{"containerPort": 8080, "name": "http"}],
                            "env": [{"name": "MODE", "value": "prod"}],
                            "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                        }
                    ]
                },
            },
        },
    }
    body["spec"].update(spec_overrides)
    return body


def managed(
    manager: str,
    fields: dict[str, Any],
    *,
    operation: str = "Update",
    time: str = "2026-01-02T03:04:05Z",
    subresource: str | None = None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": operation,
        "apiVersion": "v1",
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields,
    }
    if subresource:
        entry["subresource"] = subresource
    return entry


def with_managed(body: dict[str, Any], *entries: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(body)
    out["metadata"].setdefault("managedFields", []).extend(entries)
    return out


def scan(
    desired: list[dict[str, Any]] | dict[str, Any],
    live: list[dict[str, Any]] | dict[str, Any],
    settings: DiffSettings | None = None,
) -> ScanResult:
    d = desired if isinstance(desired, list) else [desired]
    lv = live if isinstance(live, list) else [live]
    return compare_objects(
        [KubeObject(b, "git") for b in d], [KubeObject(b, "live") for b in lv], settings or DiffSettings()
    )


def only_drift(desired: Any, live: Any, settings: DiffSettings | None = None) -> ResourceDrift:
    result = scan(desired, live, settings)
    assert not result.errors, result.errors
    assert len(result.drifts) == 1, [d.to_json() for d in result.drifts]
    return result.drifts[0]


def changes(desired: Any, live: Any, settings: DiffSettings | None = None) -> dict[str, Any]:
    """{path: change} of every change found."""
    result = scan(desired, live, settings)
    assert not result.errors, result.errors
    return {c.path: c for d in result.drifts for c in d.changes}
