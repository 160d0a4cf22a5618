"""The proposed fix of a drift: what would put the object back to Git, as data and as a kubectl line.

A fix is built from Git's manifest and the live object, after the diff has said what differs:

- `apply`: the server-side-apply body of the fields Git declares, for field manager `kubedrift`. The
  fields the comparison leaves out are left out here too (ignore rules, HPA-owned replicas, injected
  `caBundle`s): a fix never fights a controller the policy tolerates. Applying it with conflicts
  forced takes ownership of exactly these fields, because nothing else is in the body. The whole
  body is applied every time (never only the drifted fields): once kubedrift owns a field, a later
  apply without it would delete it.
- `patch`: fields that are live but not in Git (a person's `kubectl edit`, or a field Git dropped
  that another manager still owns) are not removed by an apply of someone else's fields, so a JSON
  patch removes them; every removal of a list item is preceded by a `test` of the item's key, so a
  list that changed meanwhile makes the patch fail (422) instead of removing the wrong item.
- Secrets: the body has no `data`/`stringData`; `secretKeys` names the keys and the values come
  from Git. Removal of a Secret key names the key only.

Same fix for the operator's DriftReports (`spec.fix`) and for `kubedrift scan --output fix`.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Iterator, Sequence
from typing import Any

from kubedrift.diff.compare import identity
from kubedrift.diff.ignore import apply_rules, controller_noise, scale_targets
from kubedrift.diff.keys import KEY_DEFAULTS, Component, ItemKey, render_path, unkey
from kubedrift.diff.managed import parse_managed_fields
from kubedrift.diff.normalize import SERVER_METADATA, drop_server_annotations
from kubedrift.model import (
    FIELD_MANAGER,
    DiffSettings,
    DriftState,
    Fix,
    KubeObject,
    ResourceDrift,
    ResourceKey,
    ResourceRef,
    ScanResult,
)

MAX_APPLY_BYTES = 128 * 1024
"""Above this, the report names the manifest file instead of carrying its body (reports stay small)."""
SECRET_PAYLOAD = ("data", "stringData")
APPLY_FLAGS = f"--server-side --field-manager={FIELD_MANAGER} --force-conflicts"


def declared_body(
    desired: KubeObject,
    live: KubeObject | None,
    settings: DiffSettings,
    *,
    key: ResourceKey | None = None,
    autoscaled: bool = False,
) -> dict[str, Any]:
    """Git's manifest as kubedrift applies it: the declared fields the comparison looks at, nothing else.

    Secret values are still in it: only the remediation uses this body as is (publish/remediation.py);
    everything shown to people goes through `propose_fix`, which drops them.
    """
    key = key or identity(desired)
    body = {k: v for k, v in desired.body.items() if k != "status"}
    meta = dict(body.get("metadata") or {})
    for server_field in SERVER_METADATA:
        meta.pop(server_field, None)
    drop_server_annotations(meta)
    if key.namespace:
        meta["namespace"] = key.namespace
    else:
        meta.pop("namespace", None)
    body["metadata"] = meta
    live_body = live.body if live is not None else {}
    entries = parse_managed_fields(live_body)
    skeleton = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind")}
    # Both return copies when they remove anything: neither the cached manifest nor `live` changes.
    trimmed, _ = controller_noise(key, body, live_body, entries, settings.hand_edit_managers, autoscaled)
    trimmed, _ = apply_rules(trimmed, live_body, key, settings.ignore_rules, entries)
    trimmed = copy.deepcopy(trimmed)
    trimmed.update(skeleton)  # an ignore rule may not remove what identifies the object
    trimmed["metadata"] = {**trimmed.get("metadata", {}), "name": desired.name,
                           **({"namespace": key.namespace} if key.namespace else {})}
    return trimmed


def propose_fix(
    desired: KubeObject,
    live: KubeObject | None,
    drift: ResourceDrift,
    settings: DiffSettings,
    *,
    autoscaled: bool = False,
) -> Fix:
    # unkey: decimal-text floats (`cpu: 0.1`) become plain floats, as everything shown (YAML, reports) wants
    body = unkey(declared_body(desired, live, settings, key=drift.key, autoscaled=autoscaled))
    notes: list[str] = []
    secret_keys: tuple[str, ...] = ()
    if body.get("kind") == "Secret":
        secret_keys = tuple(sorted({str(k) for f in SECRET_PAYLOAD if isinstance(body.get(f), dict)
                                    for k in body[f]}))
        body = {k: v for k, v in body.items() if k not in SECRET_PAYLOAD}
        if secret_keys:
            notes.append(f"Secret values are never copied: apply {desired.source or 'the manifest'} from Git "
                         f"for keys {', '.join(secret_keys)}")
    shown: Any = body
    if len(json.dumps(body, default=str)) > MAX_APPLY_BYTES:
        shown = None
        notes.append(f"the manifest is larger than {MAX_APPLY_BYTES // 1024} KiB: apply "
                     f"{desired.source or 'it'} from Git")
    if drift.state is DriftState.MISSING or live is None:
        return Fix("create", shown, secret_keys=secret_keys, source=desired.source, notes=tuple(notes))

    removals = [c.path for c in drift.changes if c.desired is None and c.live is not None]
    patch: list[Any] = []
    removed: list[str] = []
    located: list[tuple[list[str | int], list[Any]]] = []
    for path in sorted(set(removals)):
        if any(path.startswith(other) and path[len(other):][:1] in (".", "[") for other in removals):
            continue  # inside a removal already
        found = locate(live.body, path)
        if found is None:
            notes.append(f"{path}: not located in the live object; remove it by hand")
            continue
        removed.append(path)
        located.append(found)
    # Highest list indices first, so that each removal leaves the others' positions unchanged.
    for pointer, tests in sorted(located, key=lambda lp: _sort_key(lp[0]), reverse=True):
        patch.extend(tests)
        patch.append({"op": "remove", "path": to_pointer(pointer)})
    return Fix("apply", shown, remove=tuple(removed), patch=tuple(patch), secret_keys=secret_keys,
               source=desired.source, notes=tuple(notes))


def propose_fixes(result: ScanResult, desired: Sequence[KubeObject], live: Sequence[KubeObject],
                  settings: DiffSettings) -> None:
    """Attach its fix to every drift of `result` (`desired`/`live`: what the result was computed from)."""
    manifests, twins = ObjectIndex(desired), ObjectIndex(live)
    autoscaled = scale_targets([o.body for o in live] + [o.body for o in desired])
    for drift in result.drifts:
        manifest = manifests.find(drift.key)
        if manifest is None:
            continue
        key = drift.key
        drift.fix = propose_fix(manifest, twins.find(key), drift, settings,
                                autoscaled=(key.namespace, key.kind, key.name) in autoscaled)


class ObjectIndex:
    """Objects by the identity the diff gave their drift; a cluster-scoped custom kind's manifest may still
    name a namespace (the diff drops it), so a key without namespace also finds the one object of that name."""

    def __init__(self, objects: Sequence[KubeObject]) -> None:
        self._exact: dict[ResourceKey, KubeObject] = {}
        self._named: dict[tuple[str, str, str], list[KubeObject]] = {}
        for obj in objects:
            key = identity(obj)
            self._exact[key] = obj
            self._named.setdefault((key.group, key.kind, key.name), []).append(obj)

    def find(self, key: ResourceKey) -> KubeObject | None:
        found = self._exact.get(key)
        if found is None and not key.namespace:
            candidates = self._named.get((key.group, key.kind, key.name), [])
            found = candidates[0] if len(candidates) == 1 else None
        return found


# ----- finding a reported path in the live object -----

_KEY_FIELDS = re.compile(r"(?:^|,)([A-Za-z_][A-Za-z0-9_.]*)=")


def _item_key(item: Any, segment: str) -> ItemKey | None:
    """The key of a list item in the fields a rendered `[f=v,...]` segment names."""
    if not isinstance(item, dict):
        return None
    values: dict[str, Any] = {}
    for name in _KEY_FIELDS.findall(segment[1:-1]):
        value: Any = item
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        values[name] = KEY_DEFAULTS.get(name) if value is None else value
    return ItemKey.of(values) if values else None


def _children(node: Any, rest: str) -> Iterator[tuple[Component, str | int, Any]]:
    """(path component, JSON pointer token, child) of a node."""
    if isinstance(node, dict):
        for name, child in node.items():
            yield str(name), str(name), child
    elif isinstance(node, list):
        segment = rest[: rest.find("]") + 1] if rest.startswith("[") else ""
        for index, item in enumerate(node):
            item_key = _item_key(item, segment) if "=" in segment else None
            yield (item_key if item_key is not None else index), index, item


def locate(live: Any, rendered: str) -> tuple[list[str | int], list[Any]] | None:
    """The JSON pointer tokens of the field `rendered` (a change's path) in `live`, with `test` operations
    that pin the keys of the list items on the way; None unless exactly one field has that path."""
    matches: list[tuple[list[str | int], list[Any]]] = []

    def walk(node: Any, comps: list[Component], tokens: list[str | int], tests: list[Any]) -> None:
        so_far = render_path(comps)
        if so_far == rendered:
            matches.append((tokens, tests))
            return
        rest = rendered[len(so_far):]
        for comp, token, child in _children(node, rest.lstrip(".")):
            text = render_path([*comps, comp])
            if not rendered.startswith(text) or rendered[len(text):][:1] not in ("", ".", "["):
                continue
            pinned = tests
            if isinstance(comp, ItemKey) and isinstance(child, dict):
                pinned = [*tests, *({"op": "test", "path": to_pointer([*tokens, token, *name.split(".")]),
                                     "value": _dig(child, name)}
                                    for name, _ in comp.fields if _dig(child, name) is not None)]
            walk(child, [*comps, comp], [*tokens, token], pinned)

    walk(live, [], [], [])
    return matches[0] if len(matches) == 1 else None


def _dig(item: dict[str, Any], dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def to_pointer(tokens: Sequence[str | int]) -> str:
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def _sort_key(tokens: Sequence[str | int]) -> list[tuple[int, int, str]]:
    return [(0, t, "") if isinstance(t, int) else (1, 0, t) for t in tokens]


# ----- the line a person runs -----


def kubectl_type(ref: ResourceRef) -> str:
    """`deployment.v1.apps`, `configmap`: the fully qualified type kubectl resolves without guessing."""
    group, _, version = ref.api_version.rpartition("/")
    return f"{ref.kind.lower()}.{version}.{group}" if group else ref.kind.lower()


def _target(ref: ResourceRef) -> str:
    where = f" -n {shlex.quote(ref.namespace)}" if ref.namespace else ""
    return f"{kubectl_type(ref)} {shlex.quote(ref.name)}{where}"


def report_command(fix: Fix, ref: ResourceRef, report: str, report_namespace: str) -> str:
    """One line that applies the fix kept in a DriftReport (read back with jsonpath: nothing to copy)."""
    get = f"kubectl get driftreport {shlex.quote(report)} -n {shlex.quote(report_namespace)} -o jsonpath="
    steps = []
    if fix.patch:
        steps.append(f"kubectl patch {_target(ref)} --type=json -p \"$({get}'{{.spec.fix.patch}}')\"")
    if fix.apply is not None and not fix.secret_keys:
        steps.append(f"{get}'{{.spec.fix.apply}}' | kubectl apply {APPLY_FLAGS} -f -")
    else:
        steps.append(f"kubectl apply {APPLY_FLAGS} -f {shlex.quote(fix.source or 'MANIFEST')}  # from the Git checkout")
    return " && ".join(steps)


def inline_command(fix: Fix, ref: ResourceRef) -> str:
    """The same without a report: the patch inline, the body from the file it came from."""
    steps = []
    if fix.patch:
        steps.append(f"kubectl patch {_target(ref)} --type=json -p {shlex.quote(json.dumps(list(fix.patch)))}")
    steps.append(f"kubectl apply {APPLY_FLAGS} -f -" if fix.apply is not None and not fix.secret_keys
                 else f"kubectl apply {APPLY_FLAGS} -f {shlex.quote(fix.source or 'MANIFEST')}")
    return " && ".join(steps)


def _where(ref: ResourceRef) -> str:
    return f"{ref.kind} {ref.namespace}/{ref.name}" if ref.namespace else f"{ref.kind} {ref.name}"


def render_fixes(result: ScanResult) -> str:
    """`scan --output fix`: a YAML stream to pipe into `kubectl apply --server-side`, each object's
    removals and notes as comments above it. Objects whose body cannot be shown (Secrets, too large)
    are comments only."""
    lines = [f"# kubedrift: {len(result.drifts)} drifted object(s). Apply the bodies below with",
             f"#   kubectl apply {APPLY_FLAGS} -f -",
             "# after running the `kubectl patch` lines (fields that are live but not in Git)."]
    for drift in result.drifts:
        fix = drift.fix
        head = (f"# {_where(drift.resource)}: {drift.state.value}, severity {drift.severity.label}"
                + (f" ({', '.join(drift.categories)})" if drift.state is DriftState.DRIFTED else ""))
        if fix is None:
            lines += ["---", head, "# no fix: the manifest was not available"]
            continue
        block = ["---", head]
        if fix.remove:
            block.append("# remove (not in Git): " + ", ".join(fix.remove))
            block.append(f"#   kubectl patch {_target(drift.resource)} --type=json "
                         f"-p {shlex.quote(json.dumps(list(fix.patch)))}")
        block += [f"# note: {note}" for note in fix.notes]
        if fix.apply is not None and not fix.secret_keys:
            import yaml

            block.append(yaml.safe_dump(fix.apply, sort_keys=False).rstrip("\n"))
        lines += block
    return "\n".join(lines) + "\n"
