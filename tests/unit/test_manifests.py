"""Manifest loading (source/manifests.py): formats, skipping, namespaces, duplicates, broken files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from kubedrift.kinds import BuiltinScopes
from kubedrift.model import KubeObject, LoadError
from kubedrift.source.manifests import load_manifests

PEM = """\
-----BEGIN CERTIFICATE-----
MIIBszCCAVmgAwIBAgIUQ2Jm
---
-----END CERTIFICATE-----
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def ids(objects: list[KubeObject]) -> list[str]:
    return [o.key.id for o in objects]


def test_multi_document_yaml_keeps_a_pem_block_with_a_dash_line(tmp_path: Path) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ca"}, "data": {"ca.crt": PEM}}
    text = "---\n" + json.dumps(cm) + "\n---\n# only a comment\n---\n"
    text += "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: literal\ndata:\n  ca.crt: |\n"
    text += "".join(f"    {line}\n" for line in PEM.splitlines())
    path = write(tmp_path, "cms.yaml", text)

    objects, errors = load_manifests([str(path)])

    assert errors == []
    assert ids(objects) == ["ConfigMap:default:ca", "ConfigMap:default:literal"]
    assert [o.body["data"]["ca.crt"] for o in objects] == [PEM, PEM]


def test_list_json_and_json_array_are_expanded(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a-list.yaml",
        """\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Service
          metadata: {name: web, namespace: shop}
        - apiVersion: apps/v1
          kind: Deployment
          metadata: {name: web, namespace: shop}
        """,
    )
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-json", "namespace": "shop"}}
    (tmp_path / "b-object.json").write_text(json.dumps(obj))
    other = {**obj, "metadata": {"name": "in-array", "namespace": "shop"}}
    (tmp_path / "c-array.json").write_text(json.dumps([other]))

    objects, errors = load_manifests([str(tmp_path)])

    assert errors == []
    assert ids(objects) == [
        "Service:shop:web",
        "Deployment:shop:web",
        "ConfigMap:shop:from-json",
        "ConfigMap:shop:in-array",
    ]
    assert [o.source for o in objects] == ["a-list.yaml", "a-list.yaml", "b-object.json", "c-array.json"]


def test_non_kubernetes_yaml_and_other_files_are_skipped_silently(tmp_path: Path) -> None:
    write(tmp_path, "values.yaml", "replicaCount: 3\nimage:\n  tag: v1\nservice:\n  kind: ClusterIP\n")
    write(tmp_path, "empty.yaml", "")
    write(tmp_path, "comments.yml", "# nothing here\n---\n---\n")
    write(tmp_path, "README.md", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: readme}\n")
    write(tmp_path, ".hidden/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hidden}\n")
    write(tmp_path, "deep/er/cm.yml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\n")

    objects, errors = load_manifests([str(tmp_path)])

    assert errors == []
    assert ids(objects) == ["ConfigMap:default:deep"]
    assert objects[0].source == "deep/er/cm.yml"


def test_document_with_only_kind_or_only_apiversion_is_an_error_naming_file_and_document(tmp_path: Path) -> None:
    # Issue 7 item 10: a manifest that lost its apiVersion (or kind) is a mistake, not a values file;
    # skipping it would let the scan pass with the object never compared.
    write(
        tmp_path,
        "apps.yaml",
        """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: ok}
        ---
        kind: Deployment
        metadata: {name: web}
        spec: {replicas: 2}
        ---
        apiVersion: v1
        metadata: {name: nokind}
        ---
        replicaCount: 3
        """,
    )
    write(tmp_path, "list.json", json.dumps({"apiVersion": "v1", "kind": "List", "items": [{"kind": "Service"}]}))

    objects, errors = load_manifests([str(tmp_path)])

    assert ids(objects) == ["ConfigMap:default:ok"]
    assert [(e.file, e.message.split(" (")[0]) for e in errors] == [
        ("apps.yaml", "document 2: has kind but no apiVersion"),
        ("apps.yaml", "document 3: has apiVersion but no kind"),
        ("list.json", "document 1, item 1: has kind but no apiVersion"),
    ]


def test_directories_are_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    for rel in ("b/z.yaml", "a/y.yaml", "a.yaml", "c.json"):
        name = rel.replace("/", "-").rsplit(".", 1)[0]
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}
        write(tmp_path, rel, json.dumps(body))

    objects, _ = load_manifests([str(tmp_path)])

    assert [o.source for o in objects] == ["a.yaml", "c.json", "a/y.yaml", "b/z.yaml"]


def test_default_namespace_for_namespaced_kinds_none_for_cluster_scoped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "mixed.yaml",
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: explicit}
        ---
        apiVersion: rbac.authorization.k8s.io/v1
        kind: ClusterRole
        metadata: {name: reader, namespace: ignored-by-the-server}
        ---
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop}
        ---
        apiVersion: example.com/v1
        kind: Widget
        metadata: {name: w}
        """,
    )

    objects, errors = load_manifests([str(path)], default_namespace="shop")

    assert errors == []
    assert ids(objects) == [
        "Deployment:shop:web",
        "Service:explicit:web",
        "ClusterRole::reader",
        "Namespace::shop",
        "Widget:shop:w",
    ]
    assert "namespace" not in objects[2].metadata


def test_scope_resolver_decides_which_kinds_are_cluster_scoped(tmp_path: Path) -> None:
    path = write(tmp_path, "widget.yaml", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n")
    scopes = BuiltinScopes(extra_cluster_scoped={("example.com", "Widget")})

    objects, errors = load_manifests([str(path)], scopes=scopes)

    assert errors == []
    assert ids(objects) == ["Widget::w"]


def test_broken_file_is_an_error_with_position_and_the_rest_still_loads(tmp_path: Path) -> None:
    write(tmp_path, "apps/a-good.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: good}\n")
    write(
        tmp_path,
        "apps/broken.yaml",
        """\
        apiVersion: v1
        kind: Secret
        metadata:
          name: db
        stringData:
          password: hunter2-very-secret
            nested: [oops
        """,
    )
    write(tmp_path, "apps/z-good.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: later}\n")

    objects, errors = load_manifests([str(tmp_path)])

    assert ids(objects) == ["ConfigMap:default:good", "ConfigMap:default:later"]
    assert len(errors) == 1
    assert errors[0].file == "apps/broken.yaml"
    assert "line 7" in errors[0].message
    assert "column" in errors[0].message


def test_parse_error_messages_never_quote_the_file(tmp_path: Path) -> None:
    secret = "Zm9vYmFyLXNlY3JldC12YWx1ZQ"
    cases = {
        "unterminated.yaml": f'apiVersion: v1\nkind: Secret\npayload:\n  zqx: "{secret}\n',
        "bad-indent.yaml": f"apiVersion: v1\nkind: Secret\npayload:\n  zqx: {secret}\n wrong: {secret}\n",
        "bad-tag.yaml": f"apiVersion: v1\nkind: Secret\npayload:\n  zqx: !{secret} value\n",
        "bad-anchor.yaml": f"apiVersion: v1\nkind: Secret\npayload:\n  zqx: *{secret}\n",
        "tab.yaml": f"payload:\n\tzqx: {secret}\n",
        "bad.json": f'{{"apiVersion": "v1", "payload": {{"zqx": "{secret}" "wrong": 1}}}}',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)

    objects, errors = load_manifests([str(tmp_path)])

    assert objects == []
    assert sorted(e.file for e in errors) == sorted(cases)
    for error in errors:
        assert "line" in error.message, error
        for fragment in (secret, secret[:6], "payload", "zqx", "wrong", "value"):
            assert fragment not in error.message, error


def test_undecodable_and_missing_paths_are_errors(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\xe9}\n")
    missing = str(tmp_path / "nope.yaml")

    objects, errors = load_manifests([str(tmp_path / "latin1.yaml"), missing])

    assert objects == []
    assert errors == [
        LoadError(str(tmp_path / "latin1.yaml"), "not UTF-8 text (invalid byte at offset 51)"),
        LoadError(missing, "no such file or directory"),
    ]


def test_object_without_name_is_an_error_naming_file_and_document(tmp_path: Path) -> None:
    write(
        tmp_path,
        "nameless.yaml",
        """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: fine}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {generateName: cm-}
        ---
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Service
        - just-a-string
        """,
    )

    objects, errors = load_manifests([str(tmp_path)])

    assert ids(objects) == ["ConfigMap:default:fine"]
    assert errors == [
        LoadError("nameless.yaml", "document 2: ConfigMap has no metadata.name"),
        LoadError("nameless.yaml", "document 3, item 1: Service has no metadata.name"),
        LoadError("nameless.yaml", "document 3, item 2: not a Kubernetes object (no apiVersion/kind)"),
    ]


def test_duplicate_object_is_an_error_naming_both_files_and_the_first_wins(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {v: first}\n")
    write(
        tmp_path,
        "b.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: default}\ndata: {v: second}\n",
    )
    # Same name in another namespace or another kind is a different object.
    write(tmp_path, "c.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: other}\n")
    write(tmp_path, "d.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: cm}\n")

    objects, errors = load_manifests([str(tmp_path)])

    assert ids(objects) == ["ConfigMap:default:cm", "ConfigMap:other:cm", "Secret:default:cm"]
    assert objects[0].body["data"] == {"v": "first"}
    assert len(errors) == 1
    assert errors[0].file == "b.yaml"
    assert "ConfigMap:default:cm" in errors[0].message
    assert "a.yaml" in errors[0].message and "b.yaml" in errors[0].message


def test_source_is_the_path_as_given_for_files(tmp_path: Path) -> None:
    path = write(tmp_path, "one.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n")

    objects, _ = load_manifests([str(path)])

    assert objects[0].source == str(path)


def test_yaml_timestamps_and_octal_modes_decode_as_kubernetes_does(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cm.yaml",
        """\
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: dates}
        data:
          released: 2024-01-02
          at: 2024-01-02T03:04:05Z
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: p}
        spec:
          volumes:
          - name: v
            configMap: {name: dates, defaultMode: 0644}
        """,
    )

    objects, errors = load_manifests([str(path)])

    assert errors == []
    assert objects[0].body["data"] == {"released": "2024-01-02", "at": "2024-01-02T03:04:05Z"}
    assert objects[1].body["spec"]["volumes"][0]["configMap"]["defaultMode"] == 0o644
