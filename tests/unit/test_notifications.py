"""Notifications: both message shapes, delivery with retries, failing and slow receivers (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import base64
import datetime
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from tests.support.drifts import drift
from tests.support.receiver import Receiver, serve_receiver

from kubedrift.model import Category, Change, NotificationTarget, Severity, TransitionKind
from kubedrift.publish.delivery import NotificationError, Notifier, receiver_url
from kubedrift.publish.notifications import WEBHOOK_API_VERSION, announce

NOW = datetime.datetime(2026, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)
WEBHOOK = NotificationTarget(0, "webhook", "hook")
SLACK = NotificationTarget(1, "slack", "slack")


def _announcement(event: TransitionKind = TransitionKind.DETECTED, **kwargs: Any) -> Any:
    found = drift("Deployment", "shop", "web", severity=Severity.HIGH)
    found.changes.append(Change("data.password", "sha256:aaaaaaaaaaaa", "sha256:bbbbbbbbbbbb",
                                Category.SECRET_CHANGE, Severity.HIGH, changed_by="kubectl-edit",
                                changed_at="2026-03-04T05:00:00Z"))
    return announce(event, policy_namespace="platform", policy_name="prod", report="prod-deployment-shop-web-1",
                    at=NOW, resource=found.resource, resource_id=found.id, severity=found.severity, drift=found,
                    first_seen=NOW, revision="abc123", **kwargs)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as r:
        yield r


@pytest.fixture
def results() -> Counter[str]:
    return Counter()


def _notifier(results: Counter[str], **kwargs: Any) -> Notifier:
    options: dict[str, Any] = {"attempts": 3, "backoff": 0.01, "max_backoff": 0.05, "timeout": 5.0}
    options.update(kwargs)
    return Notifier(on_result=lambda r: results.update([r]), **options).start()


def test_webhook_body_is_versioned_and_names_the_report(receiver: Receiver, results: Counter[str]) -> None:
    notifier = _notifier(results)
    try:
        notifier.submit("platform/prod", WEBHOOK, _announcement(), lambda _t: receiver.url())
        assert notifier.wait_idle(20)
    finally:
        notifier.close()
    [body] = receiver.bodies()
    assert body["apiVersion"] == WEBHOOK_API_VERSION and body["kind"] == "DriftNotification"
    assert body["event"] == "detected" and body["severity"] == "high"
    assert body["resource"] == {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"}
    assert body["paths"] == ["spec.replicas", "data.password"]
    assert body["changedBy"] == "kubectl-edit" and body["changedAt"] == "2026-03-04T05:00:00Z"
    assert body["report"]["command"] == "kubectl get driftreport -n platform prod-deployment-shop-web-1 -o yaml"
    assert results == Counter(delivered=1)


def test_no_value_in_any_message() -> None:
    """Paths only: neither the Secret digests nor the replica counts of the changes are sent."""
    for event in TransitionKind:
        for target in (WEBHOOK, SLACK):
            from kubedrift.publish.notifications import render

            text = json.dumps(render(target, _announcement(event)))
            assert "sha256:" not in text and '"desired"' not in text and '"live"' not in text
            assert "data.password" in text


def test_slack_gets_block_kit(receiver: Receiver, results: Counter[str]) -> None:
    notifier = _notifier(results)
    try:
        notifier.submit("platform/prod", SLACK, _announcement(TransitionKind.ESCALATED,
                                                              previous_severity=Severity.MEDIUM),
                        lambda _t: receiver.url("/services/T000/B000/XXX"))
        assert notifier.wait_idle(20)
    finally:
        notifier.close()
    [received] = receiver.received
    assert received.path == "/services/T000/B000/XXX"
    body = received.body
    assert body["text"].endswith("Drift on Deployment shop/web escalated: medium -> high")
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "context"]
    assert body["blocks"][0]["text"]["type"] == "plain_text"
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert "*Severity*\nhigh" in fields and "*Changed by*\nkubectl-edit at 2026-03-04T05:00:00Z" in fields


def test_failing_receiver_is_retried_then_given_up_and_visible(receiver: Receiver, results: Counter[str]) -> None:
    receiver.answers = [500, 502, 503, 500]
    states: list[list[dict[str, Any]]] = []
    notifier = _notifier(results, on_state=lambda _p, s: states.append(s))
    try:
        notifier.submit("platform/prod", WEBHOOK, _announcement(), lambda _t: receiver.url())
        assert notifier.wait_idle(20)
        [state] = notifier.states("platform/prod")
    finally:
        notifier.close()
    assert len(receiver.received) == 3  # attempts
    assert results == Counter(retried=2, failed=1)
    assert state["failing"] is True
    assert state["lastError"] == "notifications[0] (webhook): HTTP 503 (gave up after 3 attempts)"
    assert "127.0.0.1" not in state["lastError"] and "secret-internal-detail" not in state["lastError"]
    assert states and states[-1][0]["failing"] is True


def test_retries_until_the_receiver_recovers(receiver: Receiver, results: Counter[str]) -> None:
    receiver.answers = [503, 429]
    receiver.retry_after = "0"
    notifier = _notifier(results)
    try:
        notifier.submit("platform/prod", WEBHOOK, _announcement(), lambda _t: receiver.url())
        assert notifier.wait_idle(20)
        [state] = notifier.states("platform/prod")
    finally:
        notifier.close()
    assert len(receiver.received) == 3
    assert all(body == receiver.bodies()[0] for body in receiver.bodies())  # the same message each time
    assert results == Counter(retried=2, delivered=1)
    assert state["failing"] is False and "lastDelivered" in state


def test_a_client_error_is_not_retried(receiver: Receiver, results: Counter[str]) -> None:
    receiver.answers = [404]
    notifier = _notifier(results)
    try:
        notifier.submit("platform/prod", WEBHOOK, _announcement(), lambda _t: receiver.url())
        assert notifier.wait_idle(20)
    finally:
        notifier.close()
    assert len(receiver.received) == 1 and results == Counter(failed=1)


def test_unreachable_receiver_fails_without_naming_it(results: Counter[str]) -> None:
    notifier = _notifier(results, attempts=2)
    try:
        notifier.submit("platform/prod", WEBHOOK, _announcement(), lambda _t: "http://127.0.0.1:9/hook")
        assert notifier.wait_idle(20)
        [state] = notifier.states("platform/prod")
    finally:
        notifier.close()
    assert state["failing"] and "cannot connect" in state["lastError"] and "127.0.0.1" not in state["lastError"]
    assert results == Counter(retried=1, failed=1)


def test_a_slow_receiver_holds_only_its_own_policy(receiver: Receiver, results: Counter[str]) -> None:
    """submit() never waits; while one policy's receiver hangs, another policy's message goes through,
    and the hung policy's queue is bounded."""
    with serve_receiver() as other:
        notifier = _notifier(results, queue_limit=2)
        try:
            receiver.hold()
            notifier.submit("team-a/slow", WEBHOOK, _announcement(), lambda _t: receiver.url())
            receiver.wait_for(1)  # in flight, held
            for _ in range(3):  # queue of 2: one of these three is dropped
                notifier.submit("team-a/slow", WEBHOOK, _announcement(TransitionKind.RESOLVED),
                                lambda _t: receiver.url())
            notifier.submit("team-b/fast", WEBHOOK, _announcement(), lambda _t: other.url())
            other.wait_for(1)
            assert len(receiver.received) == 1  # still held
            receiver.release()
            assert notifier.wait_idle(20)
            [slow_state] = notifier.states("team-a/slow")
        finally:
            receiver.release()
            notifier.close()
    assert [b["event"] for b in receiver.bodies()] == ["detected", "resolved", "resolved"]
    assert results == Counter(delivered=4, dropped=1)
    assert slow_state["dropped"] == 1


def test_url_reader_errors_mark_the_target_failing(results: Counter[str]) -> None:
    def refuse(_target: NotificationTarget) -> str:
        raise NotificationError('the Secret is not labelled kubedrift.dev/notification: "true"')

    notifier = _notifier(results)
    try:
        notifier.submit("platform/prod", WEBHOOK, _announcement(), refuse)
        assert notifier.wait_idle(20)
        [state] = notifier.states("platform/prod")
    finally:
        notifier.close()
    assert state["lastError"].startswith("notifications[0] (webhook): the Secret is not labelled")
    assert results == Counter(failed=1)


def _secret(url: str, labelled: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": "hook", "labels": {"kubedrift.dev/notification": "true"} if labelled else {}},
            "data": {"url": base64.b64encode(url.encode()).decode()}}


def test_receiver_url_rules() -> None:
    assert receiver_url(_secret("https://hooks.slack.com/services/T/B/X")) == "https://hooks.slack.com/services/T/B/X"
    with pytest.raises(NotificationError, match=r"not labelled kubedrift\.dev/notification"):
        receiver_url(_secret("https://example.com/x", labelled=False))
    with pytest.raises(NotificationError, match="only https"):
        receiver_url(_secret("http://example.com/x"))
    assert receiver_url(_secret("http://127.0.0.1:1/x"), allow_http=True) == "http://127.0.0.1:1/x"
    for bad in ("file:///etc/passwd", "gopher://x", "not a url"):
        with pytest.raises(NotificationError) as info:
            receiver_url(_secret(bad), allow_http=True)
        assert bad not in str(info.value)
    for internal in ("https://169.254.169.254/latest", "https://127.0.0.1:8080/api/v1/analyze", "https://[::1]/x",
                     "https://localhost/x"):
        with pytest.raises(NotificationError, match="loopback, link-local"):
            receiver_url(_secret(internal))
    with pytest.raises(NotificationError, match="user info") as info:
        receiver_url(_secret("https://bot:pa55word@example.com/x"))
    assert "pa55word" not in str(info.value)
    with pytest.raises(NotificationError, match="no key 'url'"):
        receiver_url({"metadata": {"labels": {"kubedrift.dev/notification": "true"}}, "data": {}})


def test_min_severity_and_events_select_targets() -> None:
    high_only = NotificationTarget(0, "webhook", "hook", min_severity=Severity.CRITICAL)
    resolved_only = NotificationTarget(1, "webhook", "hook", events=frozenset({TransitionKind.RESOLVED}))
    detected = _announcement()
    assert not detected.wanted_by(high_only)
    assert not detected.wanted_by(resolved_only)
    assert _announcement(TransitionKind.RESOLVED, resolution="remediated").wanted_by(resolved_only)
    assert "put back to Git by kubedrift" in _announcement(TransitionKind.RESOLVED, resolution="remediated").headline()
