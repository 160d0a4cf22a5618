"""`kubedrift scan --pushgateway URL`: the operator's metric families, pushed once per CI run.

Each run fills a fresh `DriftMetrics` (the operator's own families, one mechanism) and replaces its
whole Pushgateway group (job `kubedrift`, policy, namespace) with one PUT, so a drift that was resolved
loses its series. What a fresh process cannot know is read back from the group first:
- the first-seen time of each drift still present (DriftMetrics keeps its earliest `changedAt` when
  older), so drift age and the 72-hour alert survive from one run to the next; a drift absent from
  the group is new;
- after a failed scan, the last successful scan time and the drift series as they were: an error
  pushes state 2, never "clean", and does not advance the heartbeat the staleness alert watches.
"""

from __future__ import annotations

import http
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import push_to_gateway
from prometheus_client.parser import text_string_to_metric_families

from kubedrift.model import ResourceDrift, ScanResult, Severity
from kubedrift.publish.metric_labels import MAX_SERIES_PER_POLICY, OMIT_REASONS
from kubedrift.publish.metrics import DriftMetrics
from kubedrift.source.documents import DocumentError, parse_json, parse_yaml, read_text

JOB = "kubedrift"
DEFAULT_NAME = "scan"
DEFAULT_NAMESPACE = "default"
TIMEOUT_SECONDS = 30.0
MAX_READ_BYTES = 64 * 1024 * 1024
"""Bound on the Pushgateway's /metrics answer read back (it holds every group of every job)."""

FIRST_SEEN = "kubedrift_drift_first_seen_timestamp_seconds"
DRIFTED = "kubedrift_drifted_resources"
OMITTED = "kubedrift_drift_series_omitted"
LAST_SUCCESS = "kubedrift_last_successful_scan_timestamp_seconds"
_DRIFT_LABELS = ("kind", "resource_namespace", "name", "severity")
_SEVERITIES = {s.label for s in Severity}


class PushError(Exception):
    """The Pushgateway could not be read or written; the message names its URL (without credentials)."""


@dataclass(frozen=True)
class Group:
    """The grouping key of one policy's pushed metrics, besides job `kubedrift`."""

    policy: str
    namespace: str

    @classmethod
    def for_scan(cls, policy_file: str | None, name: str | None, namespace: str | None) -> Group:
        """The `--policy` file's metadata.name/namespace, else `--name` and `--namespace`."""
        meta = _policy_metadata(policy_file) if policy_file else {}
        return cls(policy=meta.get("name") or name or DEFAULT_NAME,
                   namespace=meta.get("namespace") or namespace or DEFAULT_NAMESPACE)


@dataclass
class PreviousPush:
    """What the group held before this run."""

    first_seen: dict[tuple[str, ...], float] = field(default_factory=dict)
    """(kind, resource_namespace, name, severity) -> first-seen timestamp."""
    drifted: dict[str, float] = field(default_factory=dict)
    """severity -> count"""
    omitted: dict[str, float] = field(default_factory=dict)
    """reason -> drifts without a first-seen series of their own"""
    last_success: float | None = None

    def first_seen_by_id(self) -> dict[str, float]:
        """Resource id (`Kind:namespace:name`) -> earliest first-seen, whatever its severity was."""
        out: dict[str, float] = {}
        for (kind, resource_namespace, name, _severity), at in self.first_seen.items():
            rid = f"{kind}:{resource_namespace}:{name}"
            out[rid] = min(at, out.get(rid, at))
        return out


def push_scan(
    gateway: str,
    group: Group,
    result: ScanResult,
    *,
    duration: float,
    error_reason: str | None = None,
) -> None:
    """Replace the group with this scan's metrics. `error_reason` set: the scan failed (state 2)."""
    base = gateway_base(gateway)
    finished = datetime.now(UTC)
    previous = read_previous(base, group)
    metrics = DriftMetrics()
    if error_reason is None:
        metrics.seed_first_seen(group.namespace, group.policy, _first_seen_seeds(result.drifts, previous))
        metrics.observe_scan(group.namespace, group.policy, result, duration=duration, finished=finished)
    else:
        metrics.observe_scan(group.namespace, group.policy, None, duration=duration, finished=finished,
                             error_reason=error_reason)
        _carry_over(metrics, group, previous)
    try:
        push_to_gateway(base, job=JOB, registry=metrics.registry,
                        grouping_key={"policy": group.policy, "namespace": group.namespace},
                        timeout=TIMEOUT_SECONDS)
    except (OSError, ValueError) as exc:
        raise PushError(f"cannot push metrics to the Pushgateway at {redact(base)}: {_reason(exc)}") from None


def error_reason(result: ScanResult, policy_file: str | None) -> str | None:
    """The `reason` of kubedrift_scan_errors_total for a scan with errors (None: it had none).

    The CLI lists a bad policy file under its path, a fatal error under no file, and every manifest
    or live object that could not be read under where it came from.
    """
    if not result.errors:
        return None
    files = {e.file for e in result.errors}
    if policy_file in files:
        return "InvalidPolicy"
    return "Other" if "" in files else "ManifestError"


def read_previous(base: str, group: Group) -> PreviousPush:
    """The group's series as the Pushgateway exposes them (`/metrics`, Prometheus text format)."""
    url = f"{base}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            body = response.read(MAX_READ_BYTES + 1)
    except (OSError, ValueError) as exc:
        raise PushError(f"cannot read the Pushgateway at {redact(base)}: {_reason(exc)}") from None
    if len(body) > MAX_READ_BYTES:
        raise PushError(f"the Pushgateway at {redact(base)} answered more than {MAX_READ_BYTES} bytes on /metrics")
    try:
        return _previous_from_text(body.decode("utf-8"), group)
    except (UnicodeDecodeError, ValueError, TypeError, IndexError):
        raise PushError(f"the Pushgateway at {redact(base)} answered /metrics with something that is not "
                        "Prometheus text format") from None


def _previous_from_text(text: str, group: Group) -> PreviousPush:
    own = {"job": JOB, "instance": "", "policy": group.policy, "namespace": group.namespace}
    previous = PreviousPush()
    for family in text_string_to_metric_families(text):
        if family.name not in (FIRST_SEEN, DRIFTED, OMITTED, LAST_SUCCESS):
            continue
        for sample in family.samples:
            labels = sample.labels
            if any(labels.get(k, "") != v for k, v in own.items()) or not _plausible(sample.value):
                continue
            if family.name == FIRST_SEEN:
                previous.first_seen[tuple(labels.get(k, "") for k in _DRIFT_LABELS)] = sample.value
            elif family.name == DRIFTED and labels.get("severity") in _SEVERITIES:
                previous.drifted[labels["severity"]] = sample.value
            elif family.name == OMITTED and labels.get("reason") in OMIT_REASONS:
                previous.omitted[labels["reason"]] = sample.value
            elif family.name == LAST_SUCCESS:
                previous.last_success = sample.value
    return previous


def _first_seen_seeds(drifts: Iterable[ResourceDrift], previous: PreviousPush) -> dict[str, datetime]:
    """The pushed first-seen of each drift still present. DriftMetrics takes the earliest of it, the
    drift's own `since` (earliest changedAt) and now; a drift the group did not hold starts a new age."""
    pushed = previous.first_seen_by_id()
    return {d.id: datetime.fromtimestamp(pushed[d.id], UTC) for d in drifts if d.id in pushed}


def _carry_over(metrics: DriftMetrics, group: Group, previous: PreviousPush) -> None:
    """A failed scan tells nothing about drift: the group keeps its drift series and heartbeat."""
    labels = {"policy": group.policy, "namespace": group.namespace}
    if previous.last_success is not None:
        metrics.last_success.labels(**labels).set(previous.last_success)
    for severity, count in previous.drifted.items():
        metrics.drifted_resources.labels(**labels, severity=severity).set(count)
    for reason, count in previous.omitted.items():
        metrics.series_omitted.labels(**labels, reason=reason).set(count)
    # Pushed by an earlier run, so already within the operator's label rules; the cap holds whatever
    # else may have been pushed into the group.
    for drift_labels, at in sorted(previous.first_seen.items())[:MAX_SERIES_PER_POLICY]:
        metrics.first_seen.labels(**labels, **dict(zip(_DRIFT_LABELS, drift_labels, strict=True))).set(at)


def _plausible(value: float) -> bool:
    return math.isfinite(value) and value >= 0


def _policy_metadata(path: str) -> dict[str, str]:
    """metadata.name/namespace of the DriftPolicy in `path`; {} when the file cannot tell (the scan says why)."""
    try:
        text = read_text(path)
        docs = parse_json(text) if path.endswith(".json") else parse_yaml(text)
    except (DocumentError, OSError, ValueError):
        return {}
    for doc in docs if isinstance(docs, list) else [docs]:
        if isinstance(doc, dict) and doc.get("kind") == "DriftPolicy" and isinstance(doc.get("metadata"), dict):
            meta = doc["metadata"]
            return {k: meta[k] for k in ("name", "namespace") if isinstance(meta.get(k), str)}
    return {}


def gateway_base(url: str) -> str:
    """`host:port` or `http(s)://host:port[/prefix]`, without a trailing slash (as push_to_gateway reads it)."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        url = f"http://{url}"
    if "@" in urllib.parse.urlsplit(url).netloc:
        raise PushError(f"the Pushgateway URL {redact(url)} holds credentials, which are not supported "
                        "(and would show in the process list)")
    return url.rstrip("/")


def redact(url: str) -> str:
    """The URL without user:password, for messages."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _reason(exc: BaseException) -> str:
    """Why a request failed, in words of our own (never the server's answer, which we did not write)."""
    if isinstance(exc, urllib.error.HTTPError):
        try:
            phrase = http.HTTPStatus(exc.code).phrase
        except ValueError:
            phrase = "error"
        return f"HTTP {exc.code} {phrase}"
    if isinstance(exc, urllib.error.URLError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)  # urllib's own words, e.g. "unknown url type"
        exc = exc.reason
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT_SECONDS:g}s"
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
