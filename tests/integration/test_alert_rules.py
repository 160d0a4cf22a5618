"""The shipped alert rules: valid, unit-tested with `promtool test rules`, identical in both forms."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kubedrift.publish.health import DEPENDENCY_MESSAGES
from kubedrift.publish.metrics import DriftMetrics

pytestmark = pytest.mark.integration

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = RULES_DIR / "kubedrift-rules.yaml"
REQUIRED_ALERTS = {
    "KubedriftScansStale", "KubedriftDriftUnaddressed", "KubedriftManyDriftedResources",
    "KubedriftCriticalDrift", "KubedriftHighSeverityDrift", "KubedriftPolicyInError",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is not installed: run `make system-deps` (Debian package `prometheus`)")
    return found


def rules() -> list[dict[str, object]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_and_unit_tests_pass() -> None:
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([tool, "test", "rules", "kubedrift-rules.test.yaml"], cwd=RULES_DIR,
                          capture_output=True, text=True, timeout=120)
    assert test.returncode == 0, test.stdout + test.stderr
    assert "SUCCESS" in test.stdout


def test_every_required_alert_is_unit_tested_and_documented() -> None:
    names = {str(rule["alert"]) for rule in rules()}
    assert names >= REQUIRED_ALERTS
    tests = yaml.safe_load((RULES_DIR / "kubedrift-rules.test.yaml").read_text())
    tested = {case["alertname"] for t in tests["tests"] for case in t["alert_rule_test"] if case["exp_alerts"]}
    assert tested == names
    runbooks = (RULES_DIR / "runbooks.md").read_text()
    for rule in rules():
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert {"summary", "description", "runbook_url"} <= set(annotations), rule["alert"]
        anchor = str(annotations["runbook_url"]).rpartition("#")[2]
        assert anchor == str(rule["alert"]).lower()
        assert f"## {rule['alert']}" in runbooks


def test_rules_use_only_metrics_the_operator_exports() -> None:
    metrics = DriftMetrics()
    metrics.watch_store(lambda: 0, lambda: False)
    exported = {m.name for m in metrics.registry.collect()}
    for rule in rules():
        for name in re.findall(r"\bkubedrift_[a-z_]+", str(rule["expr"])):
            base = name.removesuffix("_total")
            assert base in exported, f"{rule['alert']} uses {name}, which /metrics does not export"


def test_prometheusrule_manifest_holds_the_same_rules() -> None:
    manifest = yaml.safe_load((RULES_DIR / "prometheusrule.yaml").read_text())
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["spec"] == yaml.safe_load(RULES.read_text()), (
        "prometheusrule.yaml is stale: run .venv/bin/python deploy/prometheus/render_prometheusrule.py")


def test_servicemonitor_keeps_the_metrics_own_namespace_label() -> None:
    # The metrics' `namespace` is the DriftPolicy's; without honorLabels Prometheus renames it
    # `exported_namespace` and every alert would name the operator's namespace instead.
    monitor = yaml.safe_load((RULES_DIR / "servicemonitor.yaml").read_text())
    endpoints = monitor["spec"]["endpoints"]
    assert endpoints and all(e.get("honorLabels") is True for e in endpoints)


def test_store_down_texts_say_what_readyz_really_answers() -> None:
    """/readyz names the degraded dependency with a fixed message, never the driver's error (which may name
    hosts and users): the alert, its promtool test and the runbook say so, and quote that message."""
    (rule,) = [r for r in rules() if r["alert"] == "KubedriftHistoryStoreDown"]
    assert isinstance(rule["annotations"], dict)
    description = str(rule["annotations"]["description"])
    assert "/readyz lists mongodb as degraded" in description
    section = (RULES_DIR / "runbooks.md").read_text().split("## KubedriftHistoryStoreDown", 1)[1].split("\n## ")[0]
    texts = [description, (RULES_DIR / "kubedrift-rules.test.yaml").read_text(),
             (RULES_DIR / "prometheusrule.yaml").read_text(), section]
    assert not [t for t in texts if re.search(r"/readyz\W+(names|shows) the error|shows the error under", t)]
    assert DEPENDENCY_MESSAGES["mongodb"] in " ".join(section.split())
    assert "reasons.mongodb" in section
