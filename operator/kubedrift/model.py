"""Plain data shared by every stage: objects, identities, drift findings, policy settings, scan outcomes."""

from __future__ import annotations

import datetime
import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubedrift.timestamps import format_time

JSON = Any
"""A decoded JSON/YAML value (dict, list, str, int, float, bool or None)."""

# The kubedrift API: defined here once, used by the CRDs' readers and writers.
GROUP = "kubedrift.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
POLICY_PLURAL = "driftpolicies"
REPORT_PLURAL = "driftreports"
SCAN_REQUEST_ANNOTATION = f"{GROUP}/scan-requested-at"
"""Changing this annotation on a DriftPolicy asks for a scan now."""
FINALIZER = f"{GROUP}/cleanup"
ANNOTATION_PREFIX = GROUP
"""kopf's own progress/diff-base annotations on DriftPolicies."""


class KubedriftError(Exception):
    """Base of every kubedrift error. `message` says what went wrong and where (file, field, object),
    and never echoes a value read from a repository, a cluster or a caller."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DecimalFloat(float):
    """A number written with a fraction (`cpu: 0.1`), with the decimal text it was written as.

    The API server reads a quantity from the number's text, never through a binary float
    (0.1 is 100m, not 0.1000000000000000055...): the diff does the same with `text`.
    It is a float everywhere else (JSON, YAML, BSON, arithmetic).
    """

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> DecimalFloat:
        obj = super().__new__(cls, text)
        obj.text = text
        return obj

    def __reduce__(self) -> tuple[type[DecimalFloat], tuple[str]]:
        return (DecimalFloat, (self.text,))


class Severity(enum.IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (expected low, medium, high or critical)") from None


class Category(enum.StrEnum):
    MISSING = "Missing"
    SCALING = "Scaling"
    VERSION_CHANGE = "VersionChange"
    RESOURCE_CHANGE = "ResourceChange"
    CONFIGURATION_CHANGE = "ConfigurationChange"
    SECRET_CHANGE = "SecretChange"
    CONFIGMAP_CHANGE = "ConfigMapChange"
    PORT_CHANGE = "PortChange"
    VOLUME_CHANGE = "VolumeChange"
    SECURITY_CHANGE = "SecurityChange"
    LABEL_CHANGE = "LabelChange"
    ANNOTATION_CHANGE = "AnnotationChange"
    OTHER = "Other"


DEFAULT_SEVERITY: dict[Category, Severity] = {
    Category.MISSING: Severity.HIGH,
    Category.SCALING: Severity.MEDIUM,  # raised to high by the size of the change (diff.classify)
    Category.VERSION_CHANGE: Severity.HIGH,
    Category.RESOURCE_CHANGE: Severity.MEDIUM,
    Category.CONFIGURATION_CHANGE: Severity.MEDIUM,
    Category.SECRET_CHANGE: Severity.HIGH,
    Category.CONFIGMAP_CHANGE: Severity.MEDIUM,
    Category.PORT_CHANGE: Severity.MEDIUM,
    Category.VOLUME_CHANGE: Severity.MEDIUM,
    Category.SECURITY_CHANGE: Severity.CRITICAL,
    Category.LABEL_CHANGE: Severity.LOW,
    Category.ANNOTATION_CHANGE: Severity.LOW,
    Category.OTHER: Severity.MEDIUM,
}


def api_group(api_version: str) -> str:
    """`apps/v1` -> `apps`, `v1` -> `` (the core group)."""
    return api_version.rpartition("/")[0]


@dataclass(frozen=True, order=True)
class ResourceKey:
    """Identity of an object: group, kind, namespace ("" when cluster-scoped), name."""

    group: str
    kind: str
    namespace: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.namespace}:{self.name}"


@dataclass
class KubeObject:
    """One manifest or live object, as decoded, with where it came from."""

    body: dict[str, JSON]
    source: str = ""
    """File (manifests) or `cluster`/snapshot path (live) it was read from; used in error messages."""

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion") or "")

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "")

    @property
    def metadata(self) -> dict[str, JSON]:
        meta = self.body.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def name(self) -> str:
        return str(self.metadata.get("name") or "")

    @property
    def namespace(self) -> str:
        return str(self.metadata.get("namespace") or "")

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(api_group(self.api_version), self.kind, self.namespace, self.name)


@dataclass(frozen=True)
class ResourceRef:
    api_version: str
    kind: str
    namespace: str
    name: str

    def to_json(self) -> dict[str, str]:
        return {"apiVersion": self.api_version, "kind": self.kind, "namespace": self.namespace, "name": self.name}


@dataclass(frozen=True)
class Change:
    """One differing field. `desired` is None for a field a person added by hand out of Git."""

    path: str
    desired: JSON
    live: JSON
    category: Category
    severity: Severity
    changed_by: str | None = None
    changed_at: str | None = None

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "path": self.path,
            "desired": self.desired,
            "live": self.live,
            "category": self.category.value,
            "severity": self.severity.label,
        }
        if self.changed_by:
            out["changedBy"] = self.changed_by
        if self.changed_at:
            out["changedAt"] = self.changed_at
        return out


@dataclass(frozen=True)
class DriftView:
    """Both sides as the diff compared them, for side-by-side reading (`scan --output diff`).

    `desired` holds the fields Git declares (after ignore rules); `live` the same fields live plus
    the fields a person added; Secret values are digests. `live` is None for a missing object.
    """

    desired: JSON
    live: JSON


class DriftState(enum.StrEnum):
    DRIFTED = "drifted"
    MISSING = "missing"


@dataclass
class ResourceDrift:
    """All drift found on one object."""

    resource: ResourceRef
    key: ResourceKey
    state: DriftState
    severity: Severity
    score: int
    changes: list[Change]
    view: DriftView | None = field(default=None, repr=False, compare=False)
    since: str | None = None
    """Earliest `changedAt` of the changes (RFC 3339), when managedFields tell: the drift's age counts from it."""
    fix: Fix | None = field(default=None, repr=False, compare=False)
    """What would put the object back to Git (publish/fix.py); None until proposed."""

    @property
    def id(self) -> str:
        return self.key.id

    def since_time(self) -> datetime.datetime | None:
        """`since` as an aware datetime (None when unknown or unreadable)."""
        try:
            return datetime.datetime.fromisoformat(self.since) if self.since else None
        except ValueError:
            return None

    @property
    def categories(self) -> list[str]:
        return sorted({c.category.value for c in self.changes})

    def to_json(self) -> dict[str, JSON]:
        return {
            "id": self.id,
            "resource": self.resource.to_json(),
            "state": self.state.value,
            "severity": self.severity.label,
            "score": self.score,
            "categories": self.categories,
            "changes": [c.to_json() for c in self.changes],
        }


@dataclass
class LoadError:
    """A file or object that could not be read or compared; the rest of the scan goes on."""

    file: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"file": self.file, "message": self.message}


SCAN_RESULT_API_VERSION = "kubedrift.dev/v1alpha1"
"""Version of the `scan --output json|yaml` document; bumped when its shape changes incompatibly."""


@dataclass
class ScanResult:
    """What the diff stage found in one set of objects (the CLI prints it as it is)."""

    resources: int
    drifts: list[ResourceDrift] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    compared: set[str] = field(default_factory=set)
    """Ids of the desired objects the diff looked at (selected, not ignored)."""
    failed: dict[str, str] = field(default_factory=dict)
    """Ids among `compared` whose comparison failed, with the message (also in `errors`)."""

    def replaced(self, scope: Collection[str], fresh: ScanResult) -> ScanResult:
        """This result with the resources of `scope` compared again: `fresh` is what that found."""
        gone = set(scope)
        prefixes = tuple(f"{rid}: " for rid in gone)  # compare errors start with the resource id
        drifts = [d for d in self.drifts if d.id not in gone] + list(fresh.drifts)
        drifts.sort(key=lambda d: (-d.severity, d.id))
        return ScanResult(
            resources=self.resources - len(self.compared & gone) + fresh.resources,
            drifts=drifts,
            errors=[e for e in self.errors if not e.message.startswith(prefixes)] + list(fresh.errors),
            compared=(self.compared - gone) | fresh.compared,
            failed={k: v for k, v in self.failed.items() if k not in gone} | fresh.failed,
        )

    @property
    def drifted(self) -> int:
        return len(self.drifts)

    @property
    def missing(self) -> int:
        return sum(1 for d in self.drifts if d.state is DriftState.MISSING)

    def by_severity(self) -> dict[str, int]:
        counts = {s.label: 0 for s in Severity}
        for d in self.drifts:
            counts[d.severity.label] += 1
        return counts

    def summary(self) -> dict[str, JSON]:
        return {
            "resources": self.resources,
            "drifted": self.drifted,
            "missing": self.missing,
            "errors": len(self.errors),
            "by_severity": self.by_severity(),
        }

    def to_json(self) -> dict[str, JSON]:
        return {
            "apiVersion": SCAN_RESULT_API_VERSION,
            "kind": "ScanResult",
            "summary": self.summary(),
            "drifts": [d.to_json() for d in self.drifts],
            "errors": [e.to_json() for e in self.errors],
        }


@dataclass
class IgnoreRule:
    """Argo CD compatible `ignoreDifferences` entry; empty selector fields match everything."""

    group: str | None = None
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None
    json_pointers: list[str] = field(default_factory=list)
    jq_path_expressions: list[str] = field(default_factory=list)
    managed_fields_managers: list[str] = field(default_factory=list)


@dataclass
class SeverityOverride:
    """Sets the severity of changes matching kind/category/namespace (empty matches all)."""

    severity: Severity
    kind: str | None = None
    category: Category | None = None
    namespace: str | None = None


DEFAULT_HAND_EDIT_MANAGERS: tuple[str, ...] = (
    "kubectl-edit",
    "kubectl-patch",
    "kubectl-set",
    "kubectl-label",
    "kubectl-annotate",
    "kubectl",  # `kubectl apply --server-side` and `kubectl scale` by a person
)


@dataclass
class DiffSettings:
    """Everything a policy (or the CLI) tunes about one comparison."""

    default_namespace: str = "default"
    ignore_rules: list[IgnoreRule] = field(default_factory=list)
    severity_overrides: list[SeverityOverride] = field(default_factory=list)
    hand_edit_managers: tuple[str, ...] = DEFAULT_HAND_EDIT_MANAGERS
    include_kinds: list[str] = field(default_factory=list)
    exclude_kinds: list[str] = field(default_factory=list)


# ----- the outcome of one operator scan: one verdict per resource, lifecycle decided once -----


@dataclass(frozen=True)
class PolicyRef:
    """The DriftPolicy a scan ran for (owner of its reports, subject of its events)."""

    namespace: str
    name: str
    uid: str = ""

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def owner_reference(self) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": "DriftPolicy", "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": False}


@dataclass(frozen=True)
class Drifted:
    """Compared, and the live object differs from Git."""

    drift: ResourceDrift


@dataclass(frozen=True)
class Clean:
    """Compared, and the live object matches Git."""


@dataclass(frozen=True)
class NotCompared:
    """In scope but not compared this scan (forbidden, read error, parse error, outside the policy's
    namespace, ...). Everything published about it stays exactly as it was."""

    reason: str


@dataclass(frozen=True)
class Undeclared:
    """Was drifted, and the policy no longer declares it (gone from Git, or out of the policy's scope)."""


Verdict = Drifted | Clean | NotCompared | Undeclared


@dataclass(frozen=True)
class ActiveDrift:
    """A drift that is active after a scan: what the publishers keep one report/record/series of."""

    resource: ResourceRef
    severity: Severity
    first_seen: datetime.datetime

    @property
    def id(self) -> str:
        return f"{self.resource.kind}:{self.resource.namespace}:{self.resource.name}"


class PolicyState(enum.IntEnum):
    """The policy's state after a scan, as `kubedrift_policy_state` and `status.state` show it."""

    CLEAN = 0
    DRIFTED = 1
    ERROR = 2

    @property
    def label(self) -> str:
        return {0: "Clean", 1: "Drifted", 2: "Error"}[int(self)]


@dataclass(frozen=True)
class Stall:
    """Why a scan compared nothing (invalid policy, Git, credentials, cluster)."""

    reason: str
    message: str


@dataclass(frozen=True)
class ScanOutcome:
    """One scan of one DriftPolicy, decided once; reports, MongoDB, metrics, status and events translate it.

    `verdicts` has exactly one entry per resource in scope (every desired object, and every drift
    that was active before). `active` is the drift active after the scan, with its firstSeen:
    drifted now, or kept unchanged because it was not compared. `detected`, `resolved` and
    `untracked` are the lifecycle transitions of this scan (resource ids).

    An incremental scan (a watch event re-diffed a few objects) is an outcome of the same shape, whole
    (status and metrics stay whole), whose `scope` names the resources it re-decided: publishers that
    write per resource (reports, records) write only those (`decided`).
    """

    policy: PolicyRef
    finished: datetime.datetime
    revision: str | None = None
    result: ScanResult | None = None
    """The diff stage's result (None when the scan stalled)."""
    verdicts: Mapping[str, Verdict] = field(default_factory=dict)
    active: Mapping[str, ActiveDrift] = field(default_factory=dict)
    detected: tuple[str, ...] = ()
    resolved: tuple[str, ...] = ()
    untracked: tuple[str, ...] = ()
    escalated: tuple[str, ...] = ()
    """Drift active before and now, whose severity rose."""
    before: Mapping[str, ActiveDrift] = field(default_factory=dict)
    """The drift as it was before the scan, for each escalated, resolved or untracked id."""
    remediations: Mapping[str, Remediation] = field(default_factory=dict)
    """What `spec.remediation` did (or deliberately did not do) this scan, by resource id."""
    errors: tuple[LoadError, ...] = ()
    """Files, kinds and objects that could not be read or compared; everything else was."""
    read_errors: int = 0
    """How many of `errors` are kinds/namespaces the Kubernetes API would not list."""
    stall: Stall | None = None
    interval_seconds: float | None = None
    scope: frozenset[str] | None = None
    """The resources an incremental scan re-decided; None for a full scan (all of them)."""

    @property
    def incremental(self) -> bool:
        return self.scope is not None

    def decided(self) -> dict[str, Verdict]:
        """The verdicts this scan decided: all of them, or those of its `scope`."""
        if self.scope is None:
            return dict(self.verdicts)
        return {rid: v for rid, v in self.verdicts.items() if rid in self.scope}

    @property
    def stalled(self) -> bool:
        return self.stall is not None or self.result is None

    @property
    def state(self) -> PolicyState:
        if self.stalled or self.errors:
            return PolicyState.ERROR
        return PolicyState.DRIFTED if self.active else PolicyState.CLEAN

    def by_severity(self) -> dict[str, int]:
        """Active drift (compared or kept) by severity, every severity present."""
        counts = {s.label: 0 for s in Severity}
        for drift in self.active.values():
            counts[drift.severity.label] += 1
        return counts

    def resolution(self, rid: str) -> str | None:
        """How a drift ended in this scan: `remediated` (kubedrift applied its fix), `fixed` (matches Git
        again otherwise) or `undeclared` (no longer declared); None when it did not end."""
        if rid in self.untracked:
            return "undeclared"
        if rid not in self.resolved:
            return None
        action = self.remediations.get(rid)
        return "remediated" if action is not None and action.applied else "fixed"

    def not_compared(self) -> dict[str, str]:
        return {rid: v.reason for rid, v in self.verdicts.items() if isinstance(v, NotCompared)}
# ----- acting on drift: the proposed fix, notifications, remediation (issue 13) -----

FIELD_MANAGER = "kubedrift"
"""The server-side-apply field manager of every fix kubedrift proposes or applies."""


@dataclass(frozen=True)
class Fix:
    """What would put one object back to Git. Never holds a Secret value.

    `apply` is the server-side-apply body of the fields Git declares (field manager `kubedrift`;
    conflicts forced, which takes exactly these fields: nothing else is in the body); for a missing
    object it is the whole manifest. `remove` names fields that are live but not in Git (added by a
    person, or dropped from Git) and `patch` removes them (JSON patch, each removal of a list item
    guarded by a `test` of its key). For a Secret, `apply` carries no `data`/`stringData`:
    `secret_keys` names the keys, whose values come from Git.
    """

    action: str
    """`apply` (a drifted object) or `create` (a missing one)."""
    apply: JSON
    """The body to apply, or None when it cannot be shown (too large: apply the file from Git)."""
    remove: tuple[str, ...] = ()
    patch: tuple[JSON, ...] = ()
    secret_keys: tuple[str, ...] = ()
    source: str = ""
    """The manifest's file in the repository."""
    notes: tuple[str, ...] = ()
    """What the fix cannot do by itself (a field it could not locate, a body too large)."""

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"action": self.action, "fieldManager": FIELD_MANAGER}
        if self.apply is not None:
            out["apply"] = self.apply
        if self.remove:
            out["remove"] = list(self.remove)
        if self.patch:
            out["patch"] = list(self.patch)
        if self.secret_keys:
            out["secretKeys"] = list(self.secret_keys)
        if self.source:
            out["source"] = self.source
        if self.notes:
            out["notes"] = list(self.notes)
        return out


class TransitionKind(enum.StrEnum):
    """A drift episode's transitions that can be announced."""

    DETECTED = "detected"
    ESCALATED = "escalated"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class NotificationTarget:
    """One `spec.notifications[]` entry: where and what to announce."""

    index: int
    type: str
    """`webhook` or `slack`."""
    secret_ref: str
    """Secret (policy namespace) whose key `url` holds the receiver; used only when opted in by label."""
    min_severity: Severity = Severity.LOW
    events: frozenset[TransitionKind] = frozenset(TransitionKind)


class RemediationMode(enum.StrEnum):
    OFF = "Off"
    DRY_RUN = "DryRun"
    APPLY = "Apply"


@dataclass(frozen=True)
class Remediation:
    """What was done (or deliberately not done) about one drift in one scan (publish/remediation.py)."""

    resource_id: str
    mode: RemediationMode
    result: str
    """Succeeded, Failed or Skipped."""
    message: str
    time: datetime.datetime

    @property
    def applied(self) -> bool:
        return self.mode is RemediationMode.APPLY and self.result == "Succeeded"

    def to_json(self) -> dict[str, str]:
        return {"mode": self.mode.value, "result": self.result, "message": self.message,
                "time": format_time(self.time)}


@dataclass(frozen=True)
class RemediationSpec:
    """`spec.remediation`: off unless a policy asks."""

    mode: RemediationMode = RemediationMode.OFF
    min_severity: Severity = Severity.LOW
    include_kinds: tuple[str, ...] = ()
    """Empty: every kind but Secret (a Secret is acted on only when named here)."""
    exclude_kinds: tuple[str, ...] = ()
    max_per_scan: int = 5
