"""Incremental scans: a watch event re-diffs only the objects of a policy it touched.

After a full scan the engine hands what it read and decided to `IncrementalScans.remember`; a live
change (`live_changes.py`) calls `refresh`, which re-reads and re-diffs the touched objects, merges them
into the kept comparison and runs the engine's judge and publishers again: an incremental outcome of
the same shape as a full scan's. Never two at once for one policy, nor during its full scan (the
engine's per-policy lock).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from kubedrift.cluster.cache import LiveCache
from kubedrift.cluster.client import ApiError
from kubedrift.cluster.live import LiveReader, where
from kubedrift.cluster.watch import Changes, ObjectName, WatchKey
from kubedrift.diff.compare import identity
from kubedrift.engine import CONTEXT_KINDS, Comparison, Engine, Reading, compare_live, live_versions
from kubedrift.model import KubeObject, ScanOutcome

log = logging.getLogger(__name__)


@dataclass
class _Memory:
    """What a policy's last scan left for the incremental scans after it (used under the policy's lock)."""

    body: dict[str, Any]
    reading: Reading
    comparison: Comparison
    outcome: ScanOutcome
    status: dict[str, Any]
    desired: dict[str, KubeObject]
    """The desired objects by resource id: parsed once per commit, kept."""
    watched: dict[tuple[WatchKey, ObjectName], str]
    """The live object (watch, namespace/name) each desired object is compared with -> its resource id."""
    by_namespace: dict[str, list[tuple[str, KubeObject]]]
    """The desired objects of each namespace (an autoscaler's change concerns its namespace)."""
    context_versions: dict[str, str]
    """resourceVersion of each autoscaler the policy's comparisons took into account."""
    kinds: set[tuple[str, str]]
    """(group, kind) of every desired object."""
    context_declared: list[str]
    """The desired objects of a context kind (the policy declares its autoscalers)."""




class IncrementalScans:
    """The per-policy memory of the engine's last scans, and the re-diffs of live changes against it.

    Attaches itself to `engine` (`Engine.memory`), which hands it every scan and tells it when a policy's
    memory is void (spec changed, suspended, released, deleted)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._memory: dict[str, _Memory] = {}
        engine.memory = self

    def remember(self, body: dict[str, Any], reading: Reading, outcome: ScanOutcome,
                 status: dict[str, Any]) -> None:
        """Keep what this scan of the policy read and decided (under the policy's lock)."""
        ref = outcome.policy
        comparison, view = reading.comparison, reading.view
        cache = self.engine.cache
        if cache is None or outcome.stalled or comparison is None or view is None or reading.access is None:
            with self._lock:
                self._memory.pop(ref.id, None)
            return
        reader = LiveReader(view.client, view.discovery, reading.access)
        desired: dict[str, KubeObject] = {}
        watched: dict[tuple[WatchKey, ObjectName], str] = {}
        by_namespace: dict[str, list[tuple[str, KubeObject]]] = {}
        for obj in reading.desired:
            key = identity(obj)
            desired[key.id] = obj
            by_namespace.setdefault(key.namespace, []).append((key.id, obj))
            resource = reader.served(key.group, key.kind, obj.api_version)
            if resource is not None:
                name = (key.namespace if resource.namespaced else "", key.name)
                watched[(reader.watch_key(resource, key.namespace), name)] = key.id
        kinds = {(k.group, k.kind) for k in map(identity, reading.desired)}
        context_declared = [rid for rid, obj in desired.items() if (identity(obj).group, obj.kind) in CONTEXT_KINDS]
        comparison = dataclasses.replace(comparison, live=[])  # the decoded live objects go with the scan
        reading.comparison = comparison
        memory = _Memory(body, reading, comparison, outcome, status, desired, watched, by_namespace,
                         dict(comparison.context_versions), kinds, context_declared)
        with self._lock:
            self._memory[ref.id] = memory

    def refresh(self, policy_id: str, changes: Changes) -> bool:
        """Re-diff the objects of the policy that these live changes touched, and publish what changed.
        False, doing nothing, while a scan of the policy runs (ask again after it).

        Nothing happens before the policy's first scan (which reads everything anyway), nor for objects
        whose live resourceVersion is the one already compared.
        """
        lock = self.engine.policy_lock(policy_id)
        if not lock.acquire(blocking=False):
            return False
        try:
            with self._lock:
                memory = self._memory.get(policy_id)
            if memory is not None and self.engine.cache is not None:
                self._refresh(memory, changes)
            return True
        finally:
            lock.release()

    def _refresh(self, memory: _Memory, changes: Changes) -> ScanOutcome | None:
        assert self.engine.cache is not None
        began = time.monotonic()
        reading, before = memory.reading, memory.comparison
        assert reading.spec is not None and reading.view is not None and reading.access is not None
        touched, context = _touched(memory, changes, self.engine.cache)
        if not touched:
            return None
        desired = [memory.desired[rid] for rid in sorted(touched)]
        keys = [identity(o) for o in desired]
        # Read as the full scan does: context kinds the policy declares come from its declared objects
        # (those of the namespaces touched), the others from their own watches.
        namespaces = {k.namespace for k in keys}
        declared_context = [o for rid in memory.context_declared if (o := memory.desired[rid]).namespace in namespaces
                            and rid not in touched]
        context_kinds = [ck for ck in CONTEXT_KINDS if ck not in memory.kinds]
        reader = LiveReader(reading.view.client, reading.view.discovery, reading.access, cache=self.engine.cache,
                            owner=memory.outcome.policy.id, declare=False)
        read = [*desired, *declared_context]
        live = reader.read([identity(o) for o in read], context_kinds,
                           api_versions={identity(o): o.api_version for o in read})
        versions = live_versions(live)
        redo = [o for o, k in zip(desired, keys, strict=True)
                if k.id in context or not live.readable(k) or k.id in before.unread
                or versions.get(k.id, "") != before.versions.get(k.id)]
        if not redo:
            return None
        fresh = compare_live(redo, live, reading.spec.settings)
        scope = frozenset(identity(o).id for o in redo)
        kinds = {w for k in map(identity, redo) for w in (where(k.group, k.kind, k.namespace),
                                                            where(k.group, k.kind, ""))}
        read_errors = [e for e in before.read_errors if e.file not in kinds]
        read_errors += [e for e in fresh.read_errors if e not in read_errors]
        comparison = Comparison(
            result=before.result.replaced(scope, fresh.result),
            unread={k: v for k, v in before.unread.items() if k not in scope} | fresh.unread,
            read_errors=read_errors,
            versions={k: v for k, v in before.versions.items() if k not in scope} | fresh.versions,
        )
        ref = memory.outcome.policy
        outcome = self.engine.judge_comparison(ref, reading, comparison, memory.outcome.active, scope=scope)
        try:
            ledger = self.engine.reports.ledger_of(ref, scope)
        except ApiError as exc:
            log.warning("cannot read the DriftReports of %s: %s; the next scan publishes it", ref.id, exc)
            return None
        status = self.engine.publish(memory.body, outcome, ledger, reading, memory.status)
        self.engine.observe(outcome, time.monotonic() - began)
        memory.comparison, memory.outcome, memory.status = comparison, outcome, status
        if outcome.detected or outcome.resolved or outcome.untracked:
            log.info("live change in %s: %d re-diffed, %d detected, %d resolved", ref.id, len(scope),
                     len(outcome.detected), len(outcome.resolved))
        return outcome

    def forget(self, policy_id: str) -> None:
        """No incremental scan of the policy until its next scan has read it again."""
        with self._lock:
            self._memory.pop(policy_id, None)


def _touched(memory: _Memory, changes: Changes, cache: LiveCache) -> tuple[set[str], set[str]]:
    """The resource ids these live changes touch; and those touched through a context object: an
    autoscaler that changed (a new resourceVersion) changes how the replicas of its scale target compare
    (a deleted one: of every object of its namespace that declares replicas)."""
    touched: set[str] = set()
    context: set[str] = set()
    for key, names in changes.items():
        touched |= {rid for name in names if (rid := memory.watched.get((key, name))) is not None}
        if (key.group, key.kind) not in CONTEXT_KINDS:
            continue
        watch = cache.watch(key)
        present = {(str(o["metadata"].get("namespace") or ""), str(o["metadata"].get("name") or "")): o
                   for o in (watch.objects(names) if watch is not None else [])}
        for namespace, name in names:
            autoscaler = present.get((namespace, name))
            rid = f"{key.kind}:{namespace}:{name}"
            version = str((autoscaler or {}).get("metadata", {}).get("resourceVersion") or "") or None
            if memory.context_versions.get(rid) == version:
                continue  # seen as it is by the last comparison
            if version is None:
                memory.context_versions.pop(rid, None)
            else:
                memory.context_versions[rid] = version
            target = ((autoscaler.get("spec") or {}).get("scaleTargetRef") or {}) if autoscaler else None
            for desired_id, obj in memory.by_namespace.get(namespace, []):
                if target is None:
                    hit = "replicas" in (obj.body.get("spec") or {})
                else:
                    hit = (obj.kind, obj.name) == (target.get("kind"), target.get("name"))
                if hit:
                    context.add(desired_id)
    return touched | context, context
