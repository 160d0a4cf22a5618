"""jqPathExpressions: compiled with the policy, evaluated in worker processes with limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from kubedrift.diff import compare_objects
from kubedrift.jq_sandbox import MAX_PATHS, JqError, JqSandbox
from kubedrift.model import DiffSettings, IgnoreRule, KubeObject
from kubedrift.policy import PolicyError, parse_policy

SIDECAR = '.spec.template.spec.containers[] | select(.name == "istio-proxy")'


@pytest.fixture
def sandbox() -> Iterator[JqSandbox]:
    box = JqSandbox(workers=1)
    yield box
    box.close()


def workload(sidecar_image: str) -> dict[str, object]:
    return {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "image": "web:1"}, {"name": "istio-proxy", "image": sidecar_image}]}}}}


def test_paths_of_each_document(sandbox: JqSandbox) -> None:
    paths = sandbox.paths(SIDECAR, [workload("proxy:1"), {"kind": "ConfigMap"}])

    assert paths == [[["spec", "template", "spec", "containers", 1]], []]


def test_a_looping_expression_is_stopped_without_holding_up_other_threads(sandbox: JqSandbox) -> None:
    ticks = []
    stop = threading.Event()

    def tick() -> None:
        while not stop.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.01)

    ticker = threading.Thread(target=tick)
    ticker.start()
    try:
        with pytest.raises(JqError, match=r"^jqPathExpression 'def f: f; f' did not finish within 1s"):
            sandbox.paths("def f: f; f", [{}])
    finally:
        stop.set()
        ticker.join()
    assert len(ticks) > 20  # the other thread ran all along (jq in-process would hold the GIL)
    # Quarantined: the next object fails at once; other expressions still work (a new worker).
    started = time.monotonic()
    with pytest.raises(JqError, match="did not finish"):
        sandbox.paths("def f: f; f", [{}])
    assert time.monotonic() - started < 0.5
    assert sandbox.paths(".a", [{"a": 1}]) == [[["a"]]]


def test_a_billion_paths_stop_at_the_cap(sandbox: JqSandbox) -> None:
    with pytest.raises(JqError, match=f"selects more than {MAX_PATHS} paths"):
        sandbox.paths(".zz[range(1e9)]", [{}])


def test_memory_hungry_expression_dies_alone(sandbox: JqSandbox) -> None:
    with pytest.raises(JqError, match="did not finish within 1s and 1024 MiB"):
        sandbox.paths('[range(1e9) | tostring] | .[0]', [{}])
    assert sandbox.paths(".b", [{"b": 2}]) == [[["b"]]]


def test_an_invalid_expression_is_a_policy_error_naming_the_field() -> None:
    body = {"kind": "DriftPolicy", "metadata": {"name": "p"},
            "spec": {"ignoreDifferences": [{"jsonPointers": ["/a"]},
                                           {"kind": "Deployment", "jqPathExpressions": [".ok", ".spec[["]}]}}

    with pytest.raises(PolicyError) as info:
        parse_policy(body, require_source=False)

    assert str(info.value).startswith(
        "spec.ignoreDifferences[1].jqPathExpressions[1]: invalid jq expression: syntax error")


def test_an_overrunning_rule_is_an_error_on_the_objects_it_matches_and_the_rest_is_compared() -> None:
    def cm(name: str, value: str) -> KubeObject:
        return KubeObject({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "a"},
                           "data": {"k": value}}, source=f"{name}.yaml")

    settings = DiffSettings(ignore_rules=[IgnoreRule(kind="ConfigMap", name="slow",
                                                     jq_path_expressions=["def f: f; f"])])

    result = compare_objects([cm("slow", "1"), cm("fast", "1")], [cm("slow", "2"), cm("fast", "2")], settings)

    assert [d.id for d in result.drifts] == ["ConfigMap:a:fast"]
    assert [(e.file, e.message.split(": cannot compare: ")[0]) for e in result.errors] == [
        ("slow.yaml", "ConfigMap:a:slow")]
    assert "jqPathExpression 'def f: f; f' did not finish within 1s" in result.errors[0].message
