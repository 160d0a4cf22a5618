"""The Grafana dashboard only queries metrics the operator exports, and covers what issue 4 asks for."""

from __future__ import annotations

import json
import re
from pathlib import Path

from kubedrift.publish.metrics import DriftMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "kubedrift-dashboard.json"


def test_dashboard_queries_exported_metrics_only() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    metrics = DriftMetrics()
    metrics.watch_store(lambda: 0, lambda: False)
    exported = {m.name for m in metrics.registry.collect()}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {re.sub(r"_(total|bucket|count|sum)$", "", n) for e in exprs for n in re.findall(r"kubedrift_[a-z_]+", e)}
    assert used and used <= exported, used - exported
    # drift over time by severity, top drifted resources, drift age, scan duration, errors
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("by severity", "top drifted", "age", "scan duration", "errors"):
        assert topic in titles, topic
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
