"""Live snapshots (source/snapshot.py) in every shape `kubectl get -o yaml|json` prints."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from kubedrift.model import LoadError
from kubedrift.source.snapshot import load_live_snapshot


def live(kind: str, name: str, namespace: str = "shop", api_version: str = "v1") -> dict[str, object]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": "7", "uid": f"uid-{name}"},
        "data": {"when": "2024-01-02T03:04:05Z"},
    }


OBJECTS = [live("ConfigMap", "a"), live("Deployment", "web", api_version="apps/v1"), live("Namespace", "shop", "")]
IDS = ["ConfigMap:shop:a", "Deployment:shop:web", "Namespace::shop"]


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_json_list(tmp_path: Path) -> None:
    path = write(tmp_path, "s.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": OBJECTS}, indent=2))

    objects, errors = load_live_snapshot(path)

    assert errors == []
    assert [o.key.id for o in objects] == IDS
    assert [o.body for o in objects] == OBJECTS
    assert {o.source for o in objects} == {path}


def test_yaml_list(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": OBJECTS}))

    objects, errors = load_live_snapshot(path)

    assert errors == []
    assert [o.key.id for o in objects] == IDS
    assert objects[0].body["data"] == {"when": "2024-01-02T03:04:05Z"}


def test_multi_document_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "s.yaml", "---\n" + yaml.safe_dump_all(OBJECTS, explicit_start=True) + "---\n")

    objects, errors = load_live_snapshot(path)

    assert errors == []
    assert [o.key.id for o in objects] == IDS


def test_json_array_and_leading_whitespace(tmp_path: Path) -> None:
    path = write(tmp_path, "s.txt", "\n  " + json.dumps(OBJECTS))

    objects, errors = load_live_snapshot(path)

    assert errors == []
    assert [o.key.id for o in objects] == IDS


def test_single_object_json_and_yaml(tmp_path: Path) -> None:
    as_json = write(tmp_path, "one.json", json.dumps(OBJECTS[1]))
    as_yaml = write(tmp_path, "one.yaml", yaml.safe_dump(OBJECTS[1]))

    for path in (as_json, as_yaml):
        objects, errors = load_live_snapshot(path)
        assert errors == []
        assert [o.key.id for o in objects] == ["Deployment:shop:web"]


def test_typed_list_from_the_api_gives_its_items_their_kind(tmp_path: Path) -> None:
    bare = [{"metadata": {"name": n, "namespace": "shop"}, "spec": {"replicas": 1}} for n in ("a", "b")]
    path = write(tmp_path, "s.json", json.dumps({"apiVersion": "apps/v1", "kind": "DeploymentList", "items": bare}))

    objects, errors = load_live_snapshot(path)

    assert errors == []
    assert [(o.api_version, o.key.id) for o in objects] == [
        ("apps/v1", "Deployment:shop:a"),
        ("apps/v1", "Deployment:shop:b"),
    ]


def test_items_that_are_not_objects_are_errors_and_the_rest_loads(tmp_path: Path) -> None:
    items = [OBJECTS[0], {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}, "text", {"kind": "Pod"}]
    path = write(tmp_path, "s.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))

    objects, errors = load_live_snapshot(path)

    assert [o.key.id for o in objects] == ["ConfigMap:shop:a"]
    assert errors == [
        LoadError(path, "document 1, item 2: ConfigMap has no metadata.name"),
        LoadError(path, "document 1, item 3: not a Kubernetes object (no apiVersion/kind)"),
        LoadError(path, "document 1, item 4: not a Kubernetes object (no apiVersion/kind)"),
    ]


def test_broken_snapshot_is_one_error_without_content(tmp_path: Path) -> None:
    secret_value = "c3VwZXItc2VjcmV0LXZhbHVl"
    broken_json = write(tmp_path, "s.json", '{"kind": "List", "items": [{"data": {"k": "' + secret_value + '"}')
    broken_yaml = write(tmp_path, "s.yaml", f"kind: Secret\ndata:\n  k: '{secret_value}\n")

    for path in (broken_json, broken_yaml):
        objects, errors = load_live_snapshot(path)
        assert objects == []
        assert len(errors) == 1 and errors[0].file == path
        assert "line" in errors[0].message and "column" in errors[0].message
        assert secret_value not in errors[0].message


def test_missing_snapshot_is_an_error(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.yaml")

    objects, errors = load_live_snapshot(path)

    assert objects == []
    assert errors == [LoadError(path, "cannot read: No such file or directory")]


def test_empty_snapshot_is_no_objects(tmp_path: Path) -> None:
    path = write(tmp_path, "empty.yaml", "")

    assert load_live_snapshot(path) == ([], [])
