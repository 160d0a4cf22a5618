"""Delivering notifications: off the scan path, retried with backoff, bounded per policy.

`Notifier.submit` only queues (it never waits for a receiver): a slow or dead receiver delays the
messages of its own policy, never a scan and never another policy. Each policy has one queue of at
most `queue_limit` messages (the oldest is dropped, and counted, when it overflows) drained in order by
one task, so a receiver sees a drift's `detected` before its `resolved`. A message is retried on
connection errors, timeouts, 429 and 5xx (`Retry-After` honoured up to `max_backoff`), never on
other 4xx; after `attempts` tries it is given up and the target is marked failing in the policy status.

The receiver's URL is read from the target's Secret when the message is sent, through the reader the
engine hands over with the message (the policy's identity). A Secret is used only when labelled
`kubedrift.dev/notification: "true"` (so a policy cannot make the operator post to a URL kept in a
Secret meant for something else) and only for https URLs (http with KUBEDRIFT_ALLOW_INSECURE_HTTP=1).
No message, status or log line carries the URL, a response body or any value read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import datetime
import ipaddress
import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from kubedrift.cluster.client import ApiError, KubeClient, resource_path
from kubedrift.model import NotificationTarget, ScanOutcome
from kubedrift.publish.notifications import Announcement, announcements, render
from kubedrift.timestamps import format_optional_time

log = logging.getLogger(__name__)

NOTIFICATION_LABEL = "kubedrift.dev/notification"
URL_KEY = "url"


class NotificationError(Exception):
    """Why a message could not be sent; the message never holds the URL or a value read."""


def receiver_url(secret: Mapping[str, Any], *, allow_http: bool = False) -> str:
    """The URL of an opted-in notification Secret (key `url`)."""
    meta = secret.get("metadata") if isinstance(secret.get("metadata"), Mapping) else {}
    labels = meta.get("labels") if isinstance(meta, Mapping) else None
    if not isinstance(labels, Mapping) or str(labels.get(NOTIFICATION_LABEL, "")).lower() != "true":
        raise NotificationError(
            f'the Secret is not labelled {NOTIFICATION_LABEL}: "true"; it is not used for notifications')
    data = secret.get("data") if isinstance(secret.get("data"), Mapping) else {}
    assert isinstance(data, Mapping)
    raw = data.get(URL_KEY)
    if not isinstance(raw, str) or not raw:
        raise NotificationError(f"the Secret has no key {URL_KEY!r}")
    try:
        url = base64.b64decode(raw, validate=True).decode().strip()
    except (binascii.Error, ValueError):
        raise NotificationError(f"the Secret's key {URL_KEY!r} is not valid base64 text") from None
    parts = urlsplit(url)
    if parts.scheme == "http" and not allow_http:
        raise NotificationError("the receiver URL uses http; only https is allowed unless "
                                "KUBEDRIFT_ALLOW_INSECURE_HTTP=1")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise NotificationError("the receiver URL is not an http(s) URL")
    if parts.username or parts.password:
        raise NotificationError("the receiver URL holds user info; put credentials in the path or a token")
    if not allow_http and _internal_address(parts.hostname):
        raise NotificationError("the receiver URL names a loopback, link-local or unspecified address")
    return url


def _internal_address(host: str) -> bool:
    """An IP literal no tenant should aim the operator at (its own API, the node's metadata service)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower() == "localhost"
    return address.is_loopback or address.is_link_local or address.is_unspecified


UrlReader = Callable[[NotificationTarget], str]
"""Reads a target's URL (blocking; raises NotificationError). Runs in a worker thread, never in a scan."""


@dataclass
class TargetState:
    """Delivery state of one notification target of one policy, as the policy status shows it."""

    index: int
    type: str
    failing: bool = False
    last_delivered: datetime.datetime | None = None
    last_error: str | None = None
    last_error_time: datetime.datetime | None = None
    dropped: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "type": self.type, "failing": self.failing}
        if self.last_delivered:
            out["lastDelivered"] = format_optional_time(self.last_delivered)
        if self.last_error:
            out["lastError"] = self.last_error
            out["lastErrorTime"] = format_optional_time(self.last_error_time)
        if self.dropped:
            out["dropped"] = self.dropped
        return out


@dataclass
class _Message:
    policy: str
    target: NotificationTarget
    announcement: Announcement
    read_url: UrlReader


@dataclass
class _Policy:
    queue: collections.deque[_Message] = field(default_factory=collections.deque)
    draining: bool = False
    targets: dict[int, TargetState] = field(default_factory=dict)


class _Retry(Exception):
    def __init__(self, reason: str, after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after


class Notifier:
    """Queues announcements per policy and delivers them from a thread of its own."""

    def __init__(
        self,
        *,
        attempts: int = 5,
        backoff: float = 2.0,
        max_backoff: float = 60.0,
        timeout: float = 10.0,
        queue_limit: int = 100,
        on_result: Callable[[str], None] | None = None,
        on_state: Callable[[str, list[dict[str, Any]]], None] | None = None,
        allow_http: bool = False,
    ) -> None:
        """`on_result(result)` counts each message once: delivered, failed or dropped (and each retry as
        retried); `on_state(policy id, states)` is called when a target starts or stops failing."""
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.queue_limit = queue_limit
        self.allow_http = allow_http
        """Receivers over plain http (KUBEDRIFT_ALLOW_INSECURE_HTTP=1: tests, closed networks)."""
        self._on_result = on_result or (lambda _result: None)
        self._on_state = on_state
        self._policies: dict[str, _Policy] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kubedrift-notifier", daemon=True)
        self._session: aiohttp.ClientSession | None = None
        self._idle = threading.Condition(self._lock)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reporting = 0
        """State reports (on_state calls) under way."""

    def start(self) -> Notifier:
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self._session is not None:
                await self._session.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)

    # ----- called from scans (any thread): never blocks on a receiver -----

    def submit(self, policy: str, target: NotificationTarget, announcement: Announcement, read_url: UrlReader) -> None:
        message = _Message(policy, target, announcement, read_url)
        with self._lock:
            state = self._policies.setdefault(policy, _Policy())
            target_state = state.targets.setdefault(target.index, TargetState(target.index, target.type))
            target_state.type = target.type
            dropped = None
            if len(state.queue) >= self.queue_limit:
                dropped = state.queue.popleft()
                state.targets.setdefault(dropped.target.index,
                                         TargetState(dropped.target.index, dropped.target.type)).dropped += 1
            state.queue.append(message)
            start = not state.draining
            state.draining = True
        if dropped is not None:
            self._on_result("dropped")
            log.warning("notifications of %s: queue full (%d), the oldest message was dropped", policy,
                        self.queue_limit)
        if start:
            self._loop.call_soon_threadsafe(self._start_drain, policy)

    def _start_drain(self, policy: str) -> None:
        task = self._loop.create_task(self._drain(policy))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    def count_with(self, on_result: Callable[[str], None]) -> None:
        """Where results are counted (the metrics, once they exist)."""
        self._on_result = on_result

    def states(self, policy: str, targets: list[NotificationTarget] | None = None) -> list[dict[str, Any]]:
        """The status entries of a policy's targets (those configured now, when given)."""
        with self._lock:
            known = dict(self._policies[policy].targets) if policy in self._policies else {}
        if targets is not None:
            known = {t.index: known.get(t.index) or TargetState(t.index, t.type) for t in targets}
        return [known[i].to_json() for i in sorted(known)]

    def forget(self, policy: str) -> None:
        with self._lock:
            state = self._policies.get(policy)
            if state is not None:
                state.queue.clear()
                state.targets.clear()

    def wait_idle(self, timeout: float) -> bool:
        """Until every queue is empty, no message is in flight and no state report is under way (tests)."""
        with self._idle:
            return self._idle.wait_for(
                lambda: not self._reporting and not any(p.draining for p in self._policies.values()), timeout)

    # ----- the delivery thread -----

    async def _drain(self, policy: str) -> None:
        while True:
            with self._lock:
                state = self._policies[policy]
                if not state.queue:
                    state.draining = False
                    self._idle.notify_all()
                    return
                message = state.queue.popleft()
            try:
                await self._deliver(message)
            except Exception:
                log.exception("notification of %s could not be delivered", policy)

    async def _deliver(self, message: _Message) -> None:
        target = message.target
        where = f"notifications[{target.index}] ({target.type})"
        try:
            url = await asyncio.to_thread(message.read_url, target)
        except NotificationError as exc:
            self._finish(message, f"{where}: {exc}")
            return
        body = render(target, message.announcement)
        reason = ""
        for attempt in range(1, self.attempts + 1):
            try:
                await self._post(url, body)
            except _Retry as retry:
                reason = retry.reason
                if attempt == self.attempts:
                    break
                self._on_result("retried")
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                delay = min(self.max_backoff, retry.after) if retry.after is not None else delay * (
                    0.5 + random.random() / 2)
                await asyncio.sleep(delay)
                continue
            except NotificationError as exc:
                reason = str(exc)
                break
            self._finish(message, None)
            return
        self._finish(message, f"{where}: {reason} (gave up after {attempt} attempt{'s' if attempt > 1 else ''})")

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        try:
            async with self._session.post(url, json=body, allow_redirects=False,
                                          headers={"User-Agent": "kubedrift"}) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            raise _Retry(f"no answer within {self.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise _Retry(f"cannot connect ({type(exc).__name__})") from None
        if 200 <= status < 300:
            return
        if status == 429 or status >= 500:
            after = float(retry_after) if retry_after and retry_after.isdigit() else None
            raise _Retry(f"HTTP {status}", after)
        raise NotificationError(f"HTTP {status}")

    def _finish(self, message: _Message, error: str | None) -> None:
        now = datetime.datetime.now(datetime.UTC)
        with self._lock:
            state = self._policies[message.policy].targets.setdefault(
                message.target.index, TargetState(message.target.index, message.target.type))
            was_failing = state.failing
            if error is None:
                state.failing, state.last_delivered = False, now
            else:
                state.failing, state.last_error, state.last_error_time = True, error, now
            changed = was_failing != state.failing or error is not None
        self._on_result("delivered" if error is None else "failed")
        if error is not None:
            log.warning("notification of %s not delivered: %s", message.policy, error)
        if changed and self._on_state is not None:  # a status write: in a worker thread, not on the delivery loop
            with self._lock:
                self._reporting += 1
            self._loop.run_in_executor(None, self._report_state, message.policy)

    def _report_state(self, policy: str) -> None:
        assert self._on_state is not None
        try:
            self._on_state(policy, self.states(policy))
        except Exception:  # the status is informational
            log.exception("cannot record the notification state of %s", policy)
        finally:
            with self._lock:
                self._reporting -= 1
                self._idle.notify_all()


def secret_reader(client: KubeClient, namespace: str, *, allow_http: bool) -> UrlReader:
    """Reads a target's URL from its Secret through `client` (the policy's identity view)."""

    def read(target: NotificationTarget) -> str:
        where = f"Secret {namespace}/{target.secret_ref}"
        try:
            secret = client.get(resource_path("", "v1", "secrets", namespace, target.secret_ref))
        except ApiError as exc:
            if exc.not_found:
                raise NotificationError(f"{where} not found") from None
            if exc.forbidden:
                who = f" for {client.user}" if client.user else ""
                raise NotificationError(f"{where} cannot be read: forbidden{who}") from None
            raise NotificationError(f"{where} cannot be read: {exc.status} {exc.reason}") from None
        try:
            return receiver_url(secret if isinstance(secret, Mapping) else {}, allow_http=allow_http)
        except NotificationError as exc:
            raise NotificationError(f"{where}: {exc}") from None

    return read


def notify(notifier: Notifier, outcome: ScanOutcome, targets: Sequence[NotificationTarget], read_url: UrlReader) -> int:
    """Queue the outcome's transitions for every target that wants them; returns how many messages."""
    queued = 0
    for announcement in announcements(outcome):
        for target in targets:
            if announcement.wanted_by(target):
                notifier.submit(outcome.policy.id, target, announcement, read_url)
                queued += 1
    return queued
