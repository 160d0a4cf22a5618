"""Kustomize directories (source/kustomize.py via load_manifests), rendered by the real kubectl."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from kubedrift.source.kustomize import KustomizeError, render_kustomization
from kubedrift.source.manifests import load_manifests

needs_renderer = pytest.mark.skipif(
    not (shutil.which("kubectl") or shutil.which("kustomize")), reason="kubectl/kustomize not installed"
)


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def make_app(root: Path) -> None:
    """base (Deployment + ConfigMap) and an overlay that sets the namespace and replicas."""
    write(
        root,
        "base/kustomization.yaml",
        """\
        resources: [deployment.yaml, configmap.yaml]
        commonLabels: {app: web}
        """,
    )
    write(
        root,
        "base/deployment.yaml",
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: web}
        spec:
          replicas: 1
          template:
            spec:
              containers: [{name: web, image: "nginx:1.27"}]
        """,
    )
    write(root, "base/configmap.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata: {a: '1'}\n")
    write(
        root,
        "overlays/prod/kustomization.yaml",
        """\
        namespace: prod
        resources: [../../base]
        patches:
        - path: replicas.yaml
        """,
    )
    write(
        root,
        "overlays/prod/replicas.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 5}\n",
    )


@needs_renderer
def test_kustomization_dir_is_rendered_as_a_whole(tmp_path: Path) -> None:
    make_app(tmp_path)
    overlay = str(tmp_path / "overlays/prod")

    objects, errors = load_manifests([overlay], default_namespace="elsewhere")

    assert errors == []
    assert sorted(o.key.id for o in objects) == ["ConfigMap:prod:web", "Deployment:prod:web"]
    deployment = next(o for o in objects if o.kind == "Deployment")
    assert deployment.body["spec"]["replicas"] == 5
    assert deployment.metadata["labels"] == {"app": "web"}
    # The patch file is not read raw (it would be a second, conflicting Deployment).
    assert {o.source for o in objects} == {overlay}


@needs_renderer
def test_tree_renders_the_overlay_not_the_base_it_builds_on(tmp_path: Path) -> None:
    make_app(tmp_path)
    write(tmp_path, "plain/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\n")

    objects, errors = load_manifests([str(tmp_path)])

    assert errors == []
    assert sorted((o.key.id, o.source) for o in objects) == [
        ("ConfigMap:default:plain", "plain/cm.yaml"),
        ("ConfigMap:prod:web", "overlays/prod"),
        ("Deployment:prod:web", "overlays/prod"),
    ]


@needs_renderer
def test_unrelated_kustomizations_in_a_tree_are_each_rendered(tmp_path: Path) -> None:
    for app in ("a", "b"):
        write(tmp_path, f"{app}/kustomization.yml", f"namespace: {app}\nresources: [cm.yaml]\n")
        write(tmp_path, f"{app}/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n")

    objects, errors = load_manifests([str(tmp_path)])

    assert errors == []
    assert [(o.key.id, o.source) for o in objects] == [("ConfigMap:a:cm", "a"), ("ConfigMap:b:cm", "b")]


@needs_renderer
def test_render_failure_is_an_error_with_kustomize_output_and_other_paths_still_load(tmp_path: Path) -> None:
    write(tmp_path, "broken/kustomization.yaml", "resources: [cm.yaml]\npatches:\n- target: {kind: ConfigMap}\n"
                                                 "  patch: '[{op: remove, path: /data/does-not-exist}]'\n")
    write(tmp_path, "broken/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n")
    write(tmp_path, "ok/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n")

    objects, errors = load_manifests([str(tmp_path / "broken"), str(tmp_path / "ok")])

    assert [o.key.id for o in objects] == ["ConfigMap:default:ok"]
    assert len(errors) == 1
    assert errors[0].file == str(tmp_path / "broken")
    assert errors[0].message.startswith(f"kustomize rendering of {tmp_path / 'broken'} failed: ")
    assert "/data/does-not-exist" in errors[0].message


def test_missing_kubectl_and_kustomize_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "app/kustomization.yaml", "resources: [cm.yaml]\n")
    write(tmp_path, "app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    app = str(tmp_path / "app")

    objects, errors = load_manifests([app])

    assert objects == []
    assert [e.to_json() for e in errors] == [
        {"file": app, "message": f"kustomize rendering of {app} needs kubectl or kustomize on PATH"}
    ]


def test_standalone_kustomize_binary_is_used_when_kubectl_is_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in `kustomize` proves the fallback command line: `kustomize build DIR`.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "kustomize"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = build ] || exit 3\n'
        'printf "apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: from-%s\\n" "${2##*/}"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))  # kubectl is not on this PATH
    write(tmp_path, "app/kustomization.yaml", "resources: []\n")

    assert "name: from-app" in render_kustomization(str(tmp_path / "app"))


def test_render_timeout_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    slow = bin_dir / "kubectl"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    write(tmp_path, "app/kustomization.yaml", "resources: []\n")

    with pytest.raises(KustomizeError, match=r"timed out after 0\.5s"):
        render_kustomization(str(tmp_path / "app"), timeout=0.5)
