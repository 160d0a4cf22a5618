"""Opt-in remediation: run a drift's fix, as a server-side dry run or for real.

Read-only is the default (`spec.remediation.mode: Off`). The planner decides what a scan may touch:

- only drift whose severity reaches `minSeverity`, of kinds the policy selects (`includeKinds`,
  `excludeKinds`); a Secret only when `includeKinds` names `Secret`;
- `Apply` only drift that an earlier scan already reported (an Active DriftReport): every drift is
  reported at least once before kubedrift touches it, and a rollout caught half-way gets one interval
  to finish;
- at most `maxPerScan` objects per scan (highest severity first); the others wait for the next scan;
- never under the operator's own identity for a policy outside the admin namespaces: such a policy
  acts only through `spec.serviceAccountName`, so nobody gets write rights they do not have already.

The executor writes through the client it is given (the policy's identity view): first the JSON patch
that removes fields not in Git (guarded by `test`s), then a server-side apply of Git's declared fields
with field manager `kubedrift` and `force=true` (the body holds Git's fields only, so only they are
forced). A missing object is created by the same apply. `DryRun` sends both with `dryRun=All`.
Secret values are read from Git's manifest only here, sent to the API server, and never kept.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from kubedrift.cluster.client import JSON_PATCH, ApiError, KubeClient, resource_path
from kubedrift.cluster.discovery import Discovery
from kubedrift.diff.compare import identity
from kubedrift.diff.ignore import scale_targets
from kubedrift.model import (
    FIELD_MANAGER,
    DiffSettings,
    KubeObject,
    Remediation,
    RemediationMode,
    RemediationSpec,
    ResourceDrift,
    ScanResult,
)
from kubedrift.publish.fix import ObjectIndex, declared_body

log = logging.getLogger(__name__)

APPLY_PATCH = "application/apply-patch+yaml"
SUCCEEDED, FAILED, SKIPPED = "Succeeded", "Failed", "Skipped"  # Remediation.result
MAX_MESSAGE = 300


@dataclass(frozen=True)
class Plan:
    act: tuple[ResourceDrift, ...]
    skipped: tuple[tuple[ResourceDrift, str], ...]
    """Eligible drift left alone this scan, with why (rate limit, identity)."""


def _selected(drift: ResourceDrift, spec: RemediationSpec) -> bool:
    kind = drift.key.kind
    if spec.include_kinds and kind not in spec.include_kinds:
        return False
    if kind == "Secret" and "Secret" not in spec.include_kinds:
        return False
    return kind not in spec.exclude_kinds and drift.severity >= spec.min_severity


def plan(
    drifts: Sequence[ResourceDrift],
    spec: RemediationSpec,
    *,
    reported: Collection[str],
    may_write: bool,
) -> Plan:
    """What this scan acts on. `reported`: ids with an Active DriftReport from an earlier scan;
    `may_write`: the policy acts through an identity of its own (see module docstring)."""
    if spec.mode is RemediationMode.OFF:
        return Plan((), ())
    eligible = [d for d in drifts if d.fix is not None and _selected(d, spec)]
    if spec.mode is RemediationMode.APPLY:
        eligible = [d for d in eligible if d.id in reported]
    eligible.sort(key=lambda d: (-d.severity, d.id))
    if not may_write:
        why = ("a policy outside the operator's admin namespaces acts only through spec.serviceAccountName; "
               "none is set")
        return Plan((), tuple((d, why) for d in eligible))
    limit = spec.max_per_scan
    return Plan(tuple(eligible[:limit]),
                tuple((d, f"rate limit: at most {limit} per scan, next scan") for d in eligible[limit:]))


class Remediator:
    """Runs planned fixes through one identity's client."""

    def __init__(self, client: KubeClient, discovery: Discovery) -> None:
        self.client = client
        self.discovery = discovery

    def run(
        self,
        chosen: Plan,
        mode: RemediationMode,
        desired: Sequence[KubeObject],
        live: Sequence[KubeObject],
        settings: DiffSettings,
        *,
        autoscaled: Collection[tuple[str, str, str]] = (),
        now: datetime.datetime | None = None,
    ) -> dict[str, Remediation]:
        now = now or datetime.datetime.now(datetime.UTC)
        manifests, twins = ObjectIndex(desired), ObjectIndex(live)
        done: dict[str, Remediation] = {}
        for drift, why in chosen.skipped:
            done[drift.id] = Remediation(drift.id, mode, SKIPPED, why, now)
        for drift in chosen.act:
            manifest = manifests.find(drift.key)
            if manifest is None:
                done[drift.id] = Remediation(drift.id, mode, SKIPPED, "the manifest is not available", now)
                continue
            key = drift.key
            try:
                message = self._run_one(drift, manifest, twins.find(drift.key), settings, mode,
                                        autoscaled=(key.namespace, key.kind, key.name) in autoscaled)
                done[drift.id] = Remediation(drift.id, mode, SUCCEEDED, message, now)
            except ApiError as exc:
                done[drift.id] = Remediation(drift.id, mode, FAILED, _short(exc), now)
            log.info("remediation %s of %s: %s", mode.value, drift.id, done[drift.id].result)
        return done

    def _run_one(self, drift: ResourceDrift, manifest: KubeObject, live: KubeObject | None,
                 settings: DiffSettings, mode: RemediationMode, *, autoscaled: bool) -> str:
        fix = drift.fix
        assert fix is not None
        body = declared_body(manifest, live, settings, key=drift.key, autoscaled=autoscaled)
        resource = self.discovery.resolve(drift.key.group, drift.key.kind)
        if resource is None:
            raise ApiError(404, "NotFound", f"the API server does not serve {drift.key.kind}")
        version = manifest.api_version.rpartition("/")[2]
        if manifest.key.group != resource.group or not version:  # an old group (extensions): the served one
            version = resource.version
            body["apiVersion"] = resource.api_version
        path = resource_path(resource.group, version, resource.plural, drift.key.namespace or None,
                             drift.key.name)
        dry = {"dryRun": "All"} if mode is RemediationMode.DRY_RUN else {}
        steps = []
        if fix.patch and live is not None:
            self.client.request("PATCH", path, query=dry or None, body=list(fix.patch), content_type=JSON_PATCH)
            steps.append(f"removed {len(fix.remove)} field(s) not in Git")
        self.client.request("PATCH", path, query={"fieldManager": FIELD_MANAGER, "force": "true", **dry},
                            body=body, content_type=APPLY_PATCH)
        steps.append("created from Git" if fix.action == "create" else "applied Git's declared fields")
        prefix = "server-side dry run: " if dry else ""
        return prefix + "; ".join(steps) + (" (would succeed)" if dry else "")


def _short(exc: ApiError) -> str:
    """The API server's answer (it names fields, not values), cut to a line."""
    text = f"{exc.status} {exc.reason}: {exc.message}" if exc.status else exc.message
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def remediate(
    spec: RemediationSpec,
    result: ScanResult,
    desired: Sequence[KubeObject],
    live: Sequence[KubeObject],
    settings: DiffSettings,
    *,
    client: KubeClient,
    discovery: Discovery,
    reported: Collection[str],
    may_write: bool,
    rescan: Callable[[Sequence[KubeObject]], ScanResult],
) -> dict[str, Remediation]:
    """One scan's remediation: plan, act, and compare again what was applied (`result` is updated in place,
    so that the scan's verdicts say what the cluster holds after the fix)."""
    chosen = plan(result.drifts, spec, reported=reported, may_write=may_write)
    if not chosen.act and not chosen.skipped:
        return {}
    autoscaled = scale_targets([o.body for o in live] + [o.body for o in desired])
    done = Remediator(client, discovery).run(chosen, spec.mode, desired, live, settings, autoscaled=autoscaled)
    applied = {rid for rid, action in done.items() if action.applied}
    if applied:
        again = rescan([o for o in desired if identity(o).id in applied])
        # Only what was compared again replaces what was found before: an object the rescan could not
        # read keeps its drift (never taken for fixed).
        fresh = (applied & again.compared) - again.failed.keys()
        result.drifts = sorted([d for d in result.drifts if d.id not in fresh]
                               + [d for d in again.drifts if d.id in fresh], key=lambda d: (-d.severity, d.id))
    return done
