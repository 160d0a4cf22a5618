"""`kubedrift scan --pushgateway URL`: the operator's metric families, pushed once per CI run.

Each run fills a fresh `DriftMetrics` (the operator's own families and translation, one mechanism)
from the scan's `ScanOutcome` and replaces its whole Pushgateway group (job `kubedrift`, policy,
namespace) with one PUT, so the series of a drift that was resolved disappear. What the operator
knows before a scan (the active drift and its firstSeen, from its DriftReports), a CI run reads back
from its group: `read_previous` gives `verdicts.judge` the drift that was active and its first-seen
time, so drift age survives from run to run and a drift that was not compared stays as it was.

In CI any error fails the job: a scan with errors pushes state 2, counts its reason and keeps the
last successful scan time the group had, so the staleness alert sees the heartbeat stop.
"""

from __future__ import annotations

import http
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import push_to_gateway
from prometheus_client.parser import text_string_to_metric_families

from kubedrift.model import ActiveDrift, PolicyRef, ResourceRef, ScanOutcome, ScanResult, Severity
from kubedrift.publish.metrics import DriftMetrics
from kubedrift.source.documents import DocumentError, read_documents

JOB = "kubedrift"
DEFAULT_NAME = "scan"
DEFAULT_NAMESPACE = "default"
TIMEOUT_SECONDS = 30.0
MAX_READ_BYTES = 64 * 1024 * 1024
"""Bound on the Pushgateway's /metrics answer read back (it holds every group of every job)."""

FIRST_SEEN = "kubedrift_drift_first_seen_timestamp_seconds"
LAST_SUCCESS = "kubedrift_last_successful_scan_timestamp_seconds"
_LATEST_DATE = 253402300799.0
"""9999-12-31T23:59:59Z: the last time a datetime holds."""


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

    @property
    def ref(self) -> PolicyRef:
        return PolicyRef(self.namespace, self.policy)


@dataclass
class PreviousPush:
    """What the group held before this run."""

    active: dict[str, ActiveDrift] = field(default_factory=dict)
    """Resource id -> the drift that was active, with its first-seen time."""
    last_success: float | None = None


@dataclass(frozen=True)
class Pushgateway:
    base: str
    """`http(s)://host:port[/prefix]`, without a trailing slash."""
    group: Group

    @classmethod
    def at(cls, url: str, group: Group) -> Pushgateway:
        """`host:port` or `http(s)://host:port[/prefix]`, read as push_to_gateway reads it."""
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            url = f"http://{url}"
        if "@" in urllib.parse.urlsplit(url).netloc:
            raise PushError(f"the Pushgateway URL {redact(url)} holds credentials, which are not supported "
                            "(and would show in the process list)")
        return cls(url.rstrip("/"), group)

    def read_previous(self) -> PreviousPush:
        """The group's series as the Pushgateway exposes them (`/metrics`, Prometheus text format)."""
        try:
            with urllib.request.urlopen(f"{self.base}/metrics", timeout=TIMEOUT_SECONDS) as response:
                body = response.read(MAX_READ_BYTES + 1)
        except (OSError, ValueError) as exc:
            raise PushError(f"cannot read the Pushgateway at {redact(self.base)}: {_reason(exc)}") from None
        if len(body) > MAX_READ_BYTES:
            raise PushError(f"the Pushgateway at {redact(self.base)} answered more than {MAX_READ_BYTES} bytes "
                            "on /metrics")
        try:
            return _previous_from_text(body.decode("utf-8"), self.group)
        except (UnicodeDecodeError, ValueError, TypeError, IndexError):
            raise PushError(f"the Pushgateway at {redact(self.base)} answered /metrics with something that is "
                            "not Prometheus text format") from None

    def push(self, outcome: ScanOutcome, previous: PreviousPush, *, duration: float,
             error_reason: str | None) -> None:
        """Replace the group with the outcome's metrics. `error_reason`: why the scan had errors."""
        metrics = DriftMetrics()
        metrics.observe(outcome, duration=duration)
        if error_reason is not None:
            # The operator counts a partial scan as a scan; in CI an error fails the job.
            labels = {"policy": self.group.policy, "namespace": self.group.namespace}
            metrics.scan_errors.labels(**labels, reason=error_reason).inc()
            if previous.last_success is not None:
                metrics.last_success.labels(**labels).set(previous.last_success)
            else:
                metrics.last_success.remove(self.group.policy, self.group.namespace)
        try:
            push_to_gateway(self.base, job=JOB, registry=metrics.registry,
                            grouping_key={"policy": self.group.policy, "namespace": self.group.namespace},
                            timeout=TIMEOUT_SECONDS)
        except (OSError, ValueError) as exc:
            raise PushError(f"cannot push metrics to the Pushgateway at {redact(self.base)}: "
                            f"{_reason(exc)}") from None


def error_reason(result: ScanResult, policy_file: str | None) -> str | None:
    """The `reason` of kubedrift_scan_errors_total for a scan with errors (None: it had none).

    The CLI lists a bad policy file under its path, a crash under no file, and every manifest, live
    object or kind that could not be read under where it came from.
    """
    if not result.errors:
        return None
    files = {e.file for e in result.errors}
    if policy_file in files:
        return "InvalidPolicy"
    return "Other" if "" in files else "ManifestError"


def _previous_from_text(text: str, group: Group) -> PreviousPush:
    own = {"job": JOB, "instance": "", "policy": group.policy, "namespace": group.namespace}
    previous = PreviousPush()
    for family in text_string_to_metric_families(text):
        if family.name not in (FIRST_SEEN, LAST_SUCCESS):
            continue
        for sample in family.samples:
            labels = sample.labels
            if any(labels.get(k, "") != v for k, v in own.items()) or not _plausible(sample.value):
                continue
            if family.name == LAST_SUCCESS:
                previous.last_success = sample.value
                continue
            try:
                severity = Severity.parse(labels.get("severity", ""))
            except ValueError:
                continue
            ref = ResourceRef("", labels.get("kind", ""), labels.get("resource_namespace", ""), labels.get("name", ""))
            drift = ActiveDrift(ref, severity, datetime.fromtimestamp(sample.value, UTC))
            known = previous.active.get(drift.id)
            if known is None or drift.first_seen < known.first_seen:
                previous.active[drift.id] = drift
    return previous


def _plausible(value: float) -> bool:
    return math.isfinite(value) and 0 <= value <= _LATEST_DATE


def _policy_metadata(path: str) -> dict[str, str]:
    """metadata.name/namespace of the DriftPolicy in `path`; {} when the file cannot tell (the scan says why)."""
    try:
        docs = read_documents(path)
    except (DocumentError, OSError, ValueError):
        return {}
    for doc in docs:
        if isinstance(doc, dict) and doc.get("kind") == "DriftPolicy" and isinstance(doc.get("metadata"), dict):
            meta = doc["metadata"]
            return {k: meta[k] for k in ("name", "namespace") if isinstance(meta.get(k), str)}
    return {}


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
