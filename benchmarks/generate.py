"""Benchmark data: N desired/live object pairs built from the captured live-object corpus.

Each pair comes from a real desired/live pair of the corpus (or a live object and its
`last-applied-configuration`), renamed into its own name and namespace, so the live side keeps
everything a real API server adds: defaults, quantity formats, managedFields, status. About 5% of
the live objects are then drifted the way people do it (scale, set image, edit a ConfigMap or a
Service port, relabel), with the managedFields entry of the tool that did it.
"""

from __future__ import annotations

import copy
import datetime
import json
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
DRIFT_TIME = "2026-02-03T04:05:06Z"
OBJECTS_PER_FILE = 8

# Pairs the corpus notes describe as free of real drift (SOURCES.md), namespaced kinds only.
PAIRS: tuple[tuple[str, str], ...] = (
    ("argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-config.yaml",
     "argoproj__gitops-engine__pkg__diff__testdata__smd-deploy-live.yaml"),
    ("argoproj__gitops-engine__pkg__diff__testdata__ssd-service-config.yaml",
     "argoproj__gitops-engine__pkg__diff__testdata__ssd-service-live.yaml"),
    ("argoproj__gitops-engine__pkg__diff__testdata__elasticsearch-config.json",
     "argoproj__gitops-engine__pkg__diff__testdata__elasticsearch-live.json"),
    ("argoproj__gitops-engine__pkg__diff__testdata__endpoints-config.json",
     "argoproj__gitops-engine__pkg__diff__testdata__endpoints-live.json"),
    ("argoproj__gitops-engine__pkg__diff__testdata__sealedsecret-config.json",
     "argoproj__gitops-engine__pkg__diff__testdata__sealedsecret-live.json"),
    ("argoproj__gitops-engine__pkg__diff__testdata__spinnaker-sa-config.json",
     "argoproj__gitops-engine__pkg__diff__testdata__spinnaker-sa-live.json"),
    ("kubernetes__kubernetes__staging__src__k8s.io__kubectl__testdata__apply__rc.yaml",
     "kubernetes__kubernetes__staging__src__k8s.io__kubectl__testdata__apply__rc-managedfields-lastapplied.yaml"),
    ("kubernetes__website__content__en__docs__tasks__configmap-secret__managing-secret-using-config-file.md"
     "__block-data-and-stringdata-desired.yaml",
     "kubernetes__website__content__en__docs__tasks__configmap-secret__managing-secret-using-config-file.md"
     "__block-data-and-stringdata-live.yaml"),
)
# Live objects whose last-applied-configuration is the manifest that produced them.
SELF_PAIRED: tuple[str, ...] = (
    "argoproj__gitops-engine__pkg__health__testdata__statefulset.yaml",
    "argoproj__gitops-engine__pkg__health__testdata__pvc-bound.yaml",
    "argoproj__gitops-engine__pkg__health__testdata__svc-clusterip.yaml",
    "derailed__k9s__internal__xray__testdata__ds.json",
    "derailed__k9s__internal__xray__testdata__sts.json",
    "derailed__k9s__internal__render__testdata__dp.json",
    "derailed__k9s__internal__render__testdata__cj.json",
    "derailed__k9s__internal__render__testdata__cm.json",
    "derailed__k9s__internal__render__testdata__sec.json",
    "derailed__k9s__internal__render__testdata__svc.json",
    "derailed__k9s__internal__render__testdata__hpa.json",
    "derailed__k9s__internal__render__testdata__np.json",
)


@dataclass
class Template:
    desired: dict[str, Any]
    live: dict[str, Any]
    source: str


@dataclass
class Dataset:
    desired: list[dict[str, Any]] = field(default_factory=list)
    live: list[dict[str, Any]] = field(default_factory=list)
    drifted_ids: set[str] = field(default_factory=set)


def _as_json(value: Any) -> Any:
    """YAML reads unquoted timestamps as datetimes; the API server's JSON has RFC 3339 strings."""
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_json(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def _load_one(path: Path) -> dict[str, Any]:
    text = path.read_text()
    doc = json.loads(text) if path.suffix == ".json" else _as_json(yaml.load(text, Loader=yaml.CSafeLoader))
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected one object")
    return doc


def load_templates(corpus: Path) -> list[Template]:
    templates = [Template(_load_one(corpus / d), _load_one(corpus / lv), lv) for d, lv in PAIRS]
    for name in SELF_PAIRED:
        live = _load_one(corpus / name)
        applied = json.loads(live["metadata"]["annotations"][LAST_APPLIED])
        templates.append(Template(applied, live, name))
    return templates


def resource_id(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{obj['kind']}:{meta.get('namespace', '')}:{meta['name']}"


def _rename(obj: dict[str, Any], name: str, namespace: str, rng: random.Random, live: bool) -> None:
    meta = obj.setdefault("metadata", {})
    meta["name"] = name
    meta["namespace"] = namespace
    if live:
        meta["uid"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        meta["resourceVersion"] = str(rng.randrange(10_000_000, 99_999_999))
        meta.pop("selfLink", None)


def _managed(live: dict[str, Any], manager: str, fields_v1: dict[str, Any], subresource: str = "") -> None:
    entry: dict[str, Any] = {
        "apiVersion": live.get("apiVersion", "v1"),
        "fieldsType": "FieldsV1",
        "fieldsV1": fields_v1,
        "manager": manager,
        "operation": "Update",
        "time": DRIFT_TIME,
    }
    if subresource:
        entry["subresource"] = subresource
    live["metadata"].setdefault("managedFields", []).append(entry)


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec")
    return pod if isinstance(pod, dict) else None


def _drift(desired: dict[str, Any], live: dict[str, Any]) -> None:
    """Change `live` the way a person would, picking a drift that suits the kind."""
    replicas = (desired.get("spec") or {}).get("replicas")
    if isinstance(replicas, int) and "replicas" in (live.get("spec") or {}):
        live["spec"]["replicas"] = replicas + 3
        _managed(live, "kubectl-scale", {"f:spec": {"f:replicas": {}}}, "scale")
        return
    desired_pod, live_pod = _pod_spec(desired), _pod_spec(live)
    if desired_pod and live_pod and desired_pod.get("containers"):
        name = desired_pod["containers"][0]["name"]
        for container in live_pod.get("containers", []):
            if container.get("name") == name:
                container["image"] = str(container.get("image", "")) + "-hotfix"
                key = "k:" + json.dumps({"name": name}, separators=(",", ":"))
                _managed(live, "kubectl-set", {"f:spec": {"f:template": {"f:spec": {"f:containers": {
                    key: {"f:image": {}}}}}}})
                return
    if desired.get("kind") == "ConfigMap" and desired.get("data") and live.get("data"):
        key = sorted(desired["data"])[0]
        live["data"][key] = str(live["data"].get(key, "")) + "-edited"
        _managed(live, "kubectl-edit", {"f:data": {f"f:{key}": {}}})
        return
    # Anything else: a label Git sets, overwritten with `kubectl label --overwrite`.
    labels = desired["metadata"].setdefault("labels", {})
    key = sorted(labels)[0] if labels else "team"
    labels.setdefault(key, desired["metadata"]["namespace"])
    live["metadata"].setdefault("labels", {})[key] = str(labels[key]) + "-relabelled"
    _managed(live, "kubectl-label", {"f:metadata": {"f:labels": {f"f:{key}": {}}}})


def generate(templates: list[Template], n: int, seed: int = 42, drift_ratio: float = 0.05) -> Dataset:
    rng = random.Random(seed)
    data = Dataset()
    for i in range(n):
        template = templates[i % len(templates)]
        desired, live = copy.deepcopy(template.desired), copy.deepcopy(template.live)
        base = str(desired.get("metadata", {}).get("name") or template.desired["kind"].lower())
        name, namespace = f"{base[:40]}-{i:05d}", f"team-{i % 50:02d}"
        _rename(desired, name, namespace, rng, live=False)
        _rename(live, name, namespace, rng, live=True)
        if rng.random() < drift_ratio:
            _drift(desired, live)
            data.drifted_ids.add(resource_id(desired))
        data.desired.append(desired)
        data.live.append(live)
    return data


def write(data: Dataset, out: Path) -> tuple[Path, Path]:
    """Desired as a repo-like tree (one folder per namespace, several objects per file), live as one JSON List."""
    manifests = out / "desired"
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for obj in data.desired:
        by_namespace.setdefault(obj["metadata"]["namespace"], []).append(obj)
    for namespace, objects in by_namespace.items():
        folder = manifests / namespace
        folder.mkdir(parents=True, exist_ok=True)
        for start in range(0, len(objects), OBJECTS_PER_FILE):
            chunk = objects[start : start + OBJECTS_PER_FILE]
            text = yaml.dump_all(chunk, Dumper=yaml.CSafeDumper, sort_keys=False)
            (folder / f"apps-{start // OBJECTS_PER_FILE:03d}.yaml").write_text(text)
    live = out / "live.json"
    live.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": data.live, "metadata": {}}))
    return manifests, live
