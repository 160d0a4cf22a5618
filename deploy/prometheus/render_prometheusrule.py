"""Writes prometheusrule.yaml (Prometheus Operator) from kubedrift-rules.yaml (plain rule file).

Run after editing the rules: `.venv/bin/python deploy/prometheus/render_prometheusrule.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).parent
HEADER = "# Generated from kubedrift-rules.yaml by render_prometheusrule.py; do not edit by hand.\n"


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def manifest(rules: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "kubedrift",
            "namespace": "kubedrift",
            "labels": {"app.kubernetes.io/name": "kubedrift", "app.kubernetes.io/component": "alerting"},
        },
        "spec": rules,
    }


def render() -> str:
    rules = yaml.safe_load((HERE / "kubedrift-rules.yaml").read_text())
    return HEADER + yaml.dump(manifest(rules), Dumper=_Dumper, sort_keys=False, width=200)


if __name__ == "__main__":
    (HERE / "prometheusrule.yaml").write_text(render())
