"""DriftPolicy manifests -> typed settings, with errors that name the offending field."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubedrift.jq_sandbox import check_expression
from kubedrift.model import (
    DEFAULT_HAND_EDIT_MANAGERS,
    Category,
    DiffSettings,
    IgnoreRule,
    KubedriftError,
    NotificationTarget,
    RemediationMode,
    RemediationSpec,
    Severity,
    SeverityOverride,
    TransitionKind,
)
from kubedrift.names import is_dns_subdomain

DEFAULT_INTERVAL = "5m"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class PolicyError(KubedriftError, ValueError):
    """A DriftPolicy field is invalid; the message starts with the field path."""


def parse_duration(text: str, field_path: str = "spec.interval") -> float:
    """Go-style durations as in Argo CD/Flux: `30s`, `5m`, `1h30m`."""
    text = str(text).strip()
    if not re.fullmatch(DURATION_PATTERN, text):
        raise PolicyError(f"{field_path}: {text!r} is not a duration like 30s, 5m or 1h30m")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise PolicyError(f"{field_path}: must be greater than zero")
    return seconds


@dataclass
class GitSourceSpec:
    repo_url: str
    revision: str = "HEAD"
    paths: list[str] = field(default_factory=lambda: ["."])
    secret_ref: str | None = None
    """Name of a Secret in the policy's namespace holding git credentials."""


@dataclass
class PolicySpec:
    name: str
    namespace: str
    source: GitSourceSpec | None
    namespaces: list[str] = field(default_factory=list)
    """Namespaces whose objects are compared; empty means those the manifests name."""
    interval_seconds: float = 300.0
    suspend: bool = False
    settings: DiffSettings = field(default_factory=DiffSettings)
    service_account_name: str | None = None
    """Every read for the policy impersonates this service account of its namespace (SPEC §3 Tenancy)."""
    notifications: list[NotificationTarget] = field(default_factory=list)
    remediation: RemediationSpec = field(default_factory=RemediationSpec)

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


def _strings(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{where}: must be a list of strings")
    return list(value)


def _optional_str(value: Any, where: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PolicyError(f"{where}: must be a string")
    return value


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PolicyError(f"{where}: must be an object")
    return value


def _jq_problem(exc: ValueError) -> str:
    """jq's own complaint without the program text it quotes (`syntax error, unexpected ...`)."""
    first = str(exc).partition("jq: error: ")[2].splitlines()[0] if "jq: error: " in str(exc) else ""
    problem = re.sub(r" at <top-level>.*$", "", first).strip()
    if not first and "jq:" not in str(exc):
        problem = str(exc)  # a limit of ours (length), no program text in it
    return f"invalid jq expression: {problem}" if problem else "invalid jq expression"


def parse_ignore_rules(items: Any, where: str = "spec.ignoreDifferences") -> list[IgnoreRule]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise PolicyError(f"{where}: must be a list")
    rules = []
    for i, raw in enumerate(items):
        at = f"{where}[{i}]"
        item = _mapping(raw, at)
        rule = IgnoreRule(
            group=item["group"] if isinstance(item.get("group"), str) else None,
            kind=_optional_str(item.get("kind"), f"{at}.kind"),
            namespace=_optional_str(item.get("namespace"), f"{at}.namespace"),
            name=_optional_str(item.get("name"), f"{at}.name"),
            json_pointers=_strings(item.get("jsonPointers"), f"{at}.jsonPointers"),
            jq_path_expressions=_strings(item.get("jqPathExpressions"), f"{at}.jqPathExpressions"),
            managed_fields_managers=_strings(item.get("managedFieldsManagers"), f"{at}.managedFieldsManagers"),
        )
        for j, pointer in enumerate(rule.json_pointers):
            if pointer and not pointer.startswith("/"):
                raise PolicyError(f"{at}.jsonPointers[{j}]: {pointer!r} must start with '/'")
        for j, expression in enumerate(rule.jq_path_expressions):
            try:
                check_expression(expression)
            except ValueError as exc:
                raise PolicyError(f"{at}.jqPathExpressions[{j}]: {_jq_problem(exc)}") from None
        rules.append(rule)
    return rules


def parse_severity_overrides(items: Any, where: str = "spec.severityOverrides") -> list[SeverityOverride]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise PolicyError(f"{where}: must be a list")
    overrides = []
    categories = {c.value: c for c in Category}
    for i, raw in enumerate(items):
        at = f"{where}[{i}]"
        item = _mapping(raw, at)
        try:
            severity = Severity.parse(str(item.get("severity", "")))
        except ValueError as exc:
            raise PolicyError(f"{at}.severity: {exc}") from None
        category_name = _optional_str(item.get("category"), f"{at}.category")
        if category_name is not None and category_name not in categories:
            raise PolicyError(f"{at}.category: unknown category {category_name!r}")
        overrides.append(
            SeverityOverride(
                severity=severity,
                kind=_optional_str(item.get("kind"), f"{at}.kind"),
                category=categories[category_name] if category_name else None,
                namespace=_optional_str(item.get("namespace"), f"{at}.namespace"),
            )
        )
    return overrides


MAX_NOTIFICATIONS = 8
MAX_PER_SCAN_LIMIT = 100


def _severity(value: Any, where: str) -> Severity:
    if value is None or value == "":
        return Severity.LOW
    try:
        return Severity.parse(str(value))
    except ValueError as exc:
        raise PolicyError(f"{where}: {exc}") from None


def parse_notifications(items: Any, where: str = "spec.notifications") -> list[NotificationTarget]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise PolicyError(f"{where}: must be a list")
    if len(items) > MAX_NOTIFICATIONS:
        raise PolicyError(f"{where}: at most {MAX_NOTIFICATIONS} entries")
    targets = []
    for i, raw in enumerate(items):
        at = f"{where}[{i}]"
        item = _mapping(raw, at)
        kind = item.get("type")
        if kind not in ("webhook", "slack"):
            raise PolicyError(f"{at}.type: must be webhook or slack")
        ref = _mapping(item.get("secretRef"), f"{at}.secretRef")
        name = _optional_str(ref.get("name"), f"{at}.secretRef.name")
        if not name or not is_dns_subdomain(name):
            raise PolicyError(f"{at}.secretRef.name: a Secret name is required")
        events = _strings(item.get("events"), f"{at}.events")
        known = {t.value for t in TransitionKind}
        for j, event in enumerate(events):
            if event not in known:
                raise PolicyError(f"{at}.events[{j}]: must be one of detected, escalated, resolved")
        targets.append(NotificationTarget(
            index=i, type=kind, secret_ref=name, min_severity=_severity(item.get("minSeverity"), f"{at}.minSeverity"),
            events=frozenset(TransitionKind(e) for e in events) if events else frozenset(TransitionKind)))
    return targets


def parse_remediation(raw: Any, where: str = "spec.remediation") -> RemediationSpec:
    item = _mapping(raw, where)
    mode_text = item.get("mode", "Off")
    if mode_text is False:  # YAML 1.1 reads a bare `Off` as false
        mode_text = "Off"
    try:
        mode = RemediationMode(str(mode_text))
    except ValueError:
        raise PolicyError(f"{where}.mode: must be Off, DryRun or Apply") from None
    limit = item.get("maxPerScan", 5)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PER_SCAN_LIMIT:
        raise PolicyError(f"{where}.maxPerScan: must be an integer from 1 to {MAX_PER_SCAN_LIMIT}")
    return RemediationSpec(
        mode=mode,
        min_severity=_severity(item.get("minSeverity"), f"{where}.minSeverity"),
        include_kinds=tuple(_strings(item.get("includeKinds"), f"{where}.includeKinds")),
        exclude_kinds=tuple(_strings(item.get("excludeKinds"), f"{where}.excludeKinds")),
        max_per_scan=limit,
    )


def parse_policy(body: dict[str, Any], *, require_source: bool = True) -> PolicySpec:
    """Parse a DriftPolicy object. The CLI passes require_source=False (it brings its own manifests)."""
    kind = body.get("kind")
    if kind is not None and kind != "DriftPolicy":
        raise PolicyError(f"kind: expected DriftPolicy, got {kind!r}")
    meta = _mapping(body.get("metadata"), "metadata")
    spec = _mapping(body.get("spec"), "spec")

    source_raw = _mapping(spec.get("source"), "spec.source")
    source: GitSourceSpec | None = None
    if source_raw:
        repo_url = _optional_str(source_raw.get("repoURL"), "spec.source.repoURL")
        if not repo_url:
            raise PolicyError("spec.source.repoURL: is required")
        secret_ref = source_raw.get("secretRef")
        if isinstance(secret_ref, dict):
            secret_ref = secret_ref.get("name")
        paths = _strings(source_raw.get("paths"), "spec.source.paths") or ["."]
        for j, p in enumerate(paths):
            if p.startswith("/") or ".." in p.split("/"):
                raise PolicyError(f"spec.source.paths[{j}]: {p!r} must be relative and stay inside the repository")
        source = GitSourceSpec(
            repo_url=repo_url,
            revision=_optional_str(source_raw.get("revision"), "spec.source.revision") or "HEAD",
            paths=paths,
            secret_ref=_optional_str(secret_ref, "spec.source.secretRef.name"),
        )
    elif require_source:
        raise PolicyError("spec.source: is required")

    target = _mapping(spec.get("target"), "spec.target")
    settings = DiffSettings(
        default_namespace=_optional_str(target.get("defaultNamespace"), "spec.target.defaultNamespace") or "default",
        ignore_rules=parse_ignore_rules(spec.get("ignoreDifferences")),
        severity_overrides=parse_severity_overrides(spec.get("severityOverrides")),
        hand_edit_managers=tuple(_strings(spec.get("handEditManagers"), "spec.handEditManagers"))
        or DEFAULT_HAND_EDIT_MANAGERS,
        include_kinds=_strings(target.get("includeKinds"), "spec.target.includeKinds"),
        exclude_kinds=_strings(target.get("excludeKinds"), "spec.target.excludeKinds"),
    )
    suspend = spec.get("suspend", False)
    if not isinstance(suspend, bool):
        raise PolicyError("spec.suspend: must be true or false")
    service_account = _optional_str(spec.get("serviceAccountName"), "spec.serviceAccountName")
    if service_account is not None and not is_dns_subdomain(service_account):
        raise PolicyError(f"spec.serviceAccountName: {service_account!r} is not a service account name")
    return PolicySpec(
        name=str(meta.get("name") or ""),
        namespace=str(meta.get("namespace") or "default"),
        source=source,
        namespaces=_strings(target.get("namespaces"), "spec.target.namespaces"),
        interval_seconds=parse_duration(str(spec.get("interval") or DEFAULT_INTERVAL)),
        suspend=suspend,
        settings=settings,
        service_account_name=service_account,
        notifications=parse_notifications(spec.get("notifications")),
        remediation=parse_remediation(spec.get("remediation")),
    )
