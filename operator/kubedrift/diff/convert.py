"""One object read in another API version: bring both sides to one version before comparing.

The operator reads each live object in its manifest's apiVersion when the server serves it (the
server converts). A snapshot holds whatever version `kubectl get` printed, so the diff converts
the known multi-version kinds itself: HorizontalPodAutoscaler autoscaling/v1, v2beta1 and v2beta2
are brought to autoscaling/v2, as kube-apiserver's conversion does
(kubernetes pkg/apis/autoscaling/v1/conversion.go, .../v2beta1/conversion.go; field shapes from
kubernetes/api autoscaling/v1/types.go and autoscaling/v2beta1/types.go).
"""

from __future__ import annotations

import copy
import json
from typing import Any

HPA_V2 = "autoscaling/v2"
# autoscaling/v1 keeps what its schema cannot hold in annotations (pkg/apis/autoscaling/annotations.go).
METRICS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
V1_ANNOTATIONS = (
    METRICS_ANNOTATION,
    BEHAVIOR_ANNOTATION,
    "autoscaling.alpha.kubernetes.io/conditions",
    "autoscaling.alpha.kubernetes.io/current-metrics",
)
_HPA_VERSIONS = frozenset({"autoscaling/v1", "autoscaling/v2beta1", "autoscaling/v2beta2", HPA_V2})


def _target(kind: str, value: Any) -> dict[str, Any]:
    field = {"Utilization": "averageUtilization", "AverageValue": "averageValue", "Value": "value"}[kind]
    return {"type": kind, field: value}


def _v2beta1_metric(metric: Any) -> Any:
    """A v2beta1 MetricSpec (also autoscaling/v1's annotation format) in v2 shape."""
    if not isinstance(metric, dict) or not isinstance(metric.get("type"), str):
        return metric
    kind = metric["type"]
    source = metric.get(kind[:1].lower() + kind[1:])
    if not isinstance(source, dict):
        return metric
    out: dict[str, Any] = {"type": kind}
    if kind == "Resource" or kind == "ContainerResource":
        new: dict[str, Any] = {"name": source.get("name")}
        if "container" in source:
            new["container"] = source["container"]
        if source.get("targetAverageUtilization") is not None:
            new["target"] = _target("Utilization", source["targetAverageUtilization"])
        elif source.get("targetAverageValue") is not None:
            new["target"] = _target("AverageValue", source["targetAverageValue"])
    elif kind == "Pods":
        new = {"metric": _metric_id(source.get("metricName"), source.get("selector")),
               "target": _target("AverageValue", source.get("targetAverageValue"))}
    elif kind == "Object":
        new = {"describedObject": source.get("target"),
               "metric": _metric_id(source.get("metricName"), source.get("selector"))}
        if source.get("averageValue") is not None:
            new["target"] = _target("AverageValue", source["averageValue"])
        else:
            new["target"] = _target("Value", source.get("targetValue"))
    elif kind == "External":
        new = {"metric": _metric_id(source.get("metricName"), source.get("metricSelector"))}
        if source.get("targetAverageValue") is not None:
            new["target"] = _target("AverageValue", source["targetAverageValue"])
        else:
            new["target"] = _target("Value", source.get("targetValue"))
    else:
        return metric
    out[kind[:1].lower() + kind[1:]] = new
    return out


def _metric_id(name: Any, selector: Any) -> dict[str, Any]:
    return {"name": name} if selector is None else {"name": name, "selector": selector}


def _json_annotation(annotations: dict[str, Any], key: str) -> Any:
    text = annotations.get(key)
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def hpa_to_v2(body: dict[str, Any]) -> dict[str, Any]:
    """A HorizontalPodAutoscaler of any served version as autoscaling/v2 (a copy; v2 is returned as is)."""
    version = body.get("apiVersion")
    if version == HPA_V2 or version not in _HPA_VERSIONS:
        return body
    out = copy.deepcopy(body)
    out["apiVersion"] = HPA_V2
    spec = out.get("spec")
    if not isinstance(spec, dict):
        return out
    if version == "autoscaling/v2beta1" and isinstance(spec.get("metrics"), list):
        spec["metrics"] = [_v2beta1_metric(m) for m in spec["metrics"]]
    elif version == "autoscaling/v1":
        meta = out.get("metadata")
        annotations = meta.get("annotations") if isinstance(meta, dict) else None
        metrics: list[Any] = []
        if isinstance(annotations, dict):
            extra = _json_annotation(annotations, METRICS_ANNOTATION)
            if isinstance(extra, list):
                metrics += [_v2beta1_metric(m) for m in extra]
            behavior = _json_annotation(annotations, BEHAVIOR_ANNOTATION)
            if isinstance(behavior, dict):
                spec["behavior"] = behavior
            for key in V1_ANNOTATIONS:
                annotations.pop(key, None)
        cpu = spec.pop("targetCPUUtilizationPercentage", None)
        if cpu is not None:
            metrics.append({"type": "Resource", "resource": {"name": "cpu", "target": _target("Utilization", cpu)}})
        if metrics:
            spec["metrics"] = metrics
    return out


def same_version(desired: dict[str, Any], live: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both objects in one API version when they differ in a way the diff knows how to convert."""
    d_version, l_version = desired.get("apiVersion"), live.get("apiVersion")
    if d_version == l_version or desired.get("kind") != "HorizontalPodAutoscaler":
        return desired, live
    if d_version in _HPA_VERSIONS and l_version in _HPA_VERSIONS:
        return hpa_to_v2(desired), hpa_to_v2(live)
    return desired, live
