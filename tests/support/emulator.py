"""A Kubernetes API for tests: kmock's KubernetesEmulator over real HTTP, with the gaps closed.

kmock stores objects as plain dicts and merges every PATCH as a dict merge. A real API server
does more, and the operator (and kopf) depend on it. This subclass adds, per SPEC §5:

- uid, resourceVersion (one counter for the whole server), generation (bumped when anything
  but metadata/status changes), creationTimestamp, generateName;
- the `status` subresource: writes to `/status` change only status, writes to the object
  ignore status, creation drops it (for resources that declare the subresource);
- PATCH by content type: JSON patch (RFC 6902, including `test`), merge patch (RFC 7386),
  strategic merge patch (approximated by a merge patch), server-side apply (`application/apply-patch+yaml`:
  maps merged, the built-in keyed lists merged by their keys, other lists replaced, the object created when
  absent; `fieldManager` required; field ownership and conflicts are not modelled, so every apply acts as
  with `force=true`); `dryRun=All` on POST and PATCH answers with the result and stores nothing; PUT with
  resourceVersion conflicts;
- deletion with finalizers (deletionTimestamp, then gone when the last finalizer goes);
- list responses with kind/apiVersion/resourceVersion, `labelSelector` and
  `fieldSelector=metadata.name/namespace`; `Table` responses built from a CRD's printer columns
  (what `kubectl get` asks for); deterministic preferred versions in discovery;
- CRD schema validation with jsonschema (422 like the API server);
- 403 for resources the test marks forbidden (to play an operator without RBAC on a kind);
- watches as the API server serves them: without `resourceVersion` every current object is replayed as
  ADDED (kmock's own behaviour), with one the events after it are replayed from a history, and a version
  older than the compacted history gets an ERROR event with 410 Expired; `allowWatchBookmarks` (a BOOKMARK
  every `bookmark_interval` seconds of quiet), `timeoutSeconds`; paginated LISTs (`limit`/`continue`, an
  expired continue token is 410). Tests can compact the history (`expire_history`) and cut every open
  watch (`break_watches`) to make a client resume or relist;
- impersonation (`Impersonate-User`, `Impersonate-Group`) judged by the RBAC objects stored in it
  (Roles, ClusterRoles and their bindings, see tests/support/rbac.py): the requester (the test token is
  the operator's ServiceAccount) needs `impersonate` rights, and an impersonated request may do only what
  RBAC grants the identity it acts as (discovery and /version stay open, as `system:discovery` allows);
  otherwise 403 with the API server's message. Un-impersonated requests keep every right (but `forbidden`).
  `audit` lists (user, verb, path) of every request, to show what was (not) read as whom.

It runs in a background thread with its own event loop, so tests (and kubectl, and the operator
process) talk to it over HTTP like to any API server.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import copy
import datetime
import json
import re
import secrets
import threading
import uuid
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import jsonpatch
import jsonschema
import kmock
import yaml
from kmock._internal import enums, parsing, rendering
from multidict import CIMultiDict
from tests.support.rbac import Attributes, Identity, authorize, impersonated_identity, service_account_identity

T = TypeVar("T")
JSONDict = dict[str, Any]

_VERSION_RE = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def _version_rank(version: str) -> tuple[int, int, int]:
    """Kubernetes' version priority: GA > beta > alpha, then by number (v2 > v1 > v1beta2)."""
    m = _VERSION_RE.match(version)
    if not m:
        return (-1, 0, 0)
    stability = {"alpha": 0, "beta": 1, None: 2}[m.group(2)]
    return (stability, int(m.group(1)), int(m.group(3) or 0))


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


APPLY_PATCH = "application/apply-patch+yaml"

# The list-map keys (x-kubernetes-list-map-keys) of the built-in lists server-side apply merges by key;
# written here from the Kubernetes OpenAPI, independent of kubedrift's own table.
SSA_LIST_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",), "env": ("name",),
    "volumes": ("name",), "volumeMounts": ("mountPath",), "imagePullSecrets": ("name",),
    "ports": ("containerPort", "protocol"), "hostAliases": ("ip",), "volumeDevices": ("devicePath",),
}


def _list_item_key(field: str, item: Any) -> tuple[Any, ...] | None:
    keys = SSA_LIST_KEYS.get(field)
    if keys is None or not isinstance(item, dict):
        return None
    if field == "ports" and "containerPort" not in item:
        keys = ("port", "protocol")
    return tuple(item.get(k, "TCP" if k == "protocol" else None) for k in keys)


def apply_merge(live: Any, applied: Any, field: str = "") -> Any:
    """Server-side apply's merge of an applied configuration into an object (ownership left out)."""
    if isinstance(applied, dict) and isinstance(live, dict):
        out = dict(live)
        for key, value in applied.items():
            out[key] = apply_merge(live.get(key), value, key) if key in live else copy.deepcopy(value)
        return out
    if isinstance(applied, list) and isinstance(live, list) and field in SSA_LIST_KEYS:
        merged = [copy.deepcopy(item) for item in live]
        for item in applied:
            key = _list_item_key(field, item)
            at = next((i for i, old in enumerate(merged) if key is not None and _list_item_key(field, old) == key),
                      None)
            if at is None:
                merged.append(copy.deepcopy(item))
            else:
                merged[at] = apply_merge(merged[at], item, "")
        return merged
    return copy.deepcopy(applied)


def _human_age(stamp: str | None) -> str:
    if not stamp:
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    seconds = max(0, int((datetime.datetime.now(datetime.UTC) - then).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _json_path(obj: Any, path: str) -> Any:
    """The simple `.a.b.c` JSONPaths that printer columns use."""
    for part in path.strip().lstrip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _selector_matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field_selector_matches(obj: JSONDict, selector: str) -> bool:
    meta = obj.get("metadata", {})
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.replace("==", "=").partition("=")
        field = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace")}.get(key)
        if field != value:
            return False
    return True


_kmock_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    """kmock reads `/api/v1/namespaces[/NAME[/status]]` as a namespace prefix; it is the Namespace resource."""
    parts = path.strip("/").split("/")
    rest = parts[2:] if parts[:1] == ["api"] else parts[3:] if parts[:1] == ["apis"] else []
    if rest[:1] == ["namespaces"] and (len(rest) <= 2 or (len(rest) == 3 and rest[2] in ("status", "finalize"))):
        group = "" if parts[0] == "api" else parts[1]
        version = parts[1] if parts[0] == "api" else parts[2]
        return parsing.ParsedPath(
            group, version, "namespaces", None, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
        )
    return _kmock_parse_path(path)


parsing.parse_path = _parse_path


class ApiEmulator(kmock.KubernetesEmulator):  # type: ignore[misc]
    """See the module docstring. Use through `EmulatorServer`."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.resource_version = 1000
        self.forbidden: set[tuple[str, str]] = set()  # (group, plural)
        self.requester: Identity = service_account_identity("kubedrift", "kubedrift")
        self.audit: list[tuple[str, str, str]] = []  # (user, verb, path) of every request
        self.schemas: dict[Any, Any] = {}  # resource -> jsonschema validator
        self.columns: dict[Any, list[JSONDict]] = {}  # resource -> printer columns
        self.history: collections.deque[tuple[int, Any, JSONDict]] = collections.deque()  # (rv, res, event)
        self.history_limit = 100_000
        self.compacted_rv = self.resource_version
        """Watches and continue tokens from before this version get 410 Expired."""
        self.bookmark_interval = 1.0
        self.list_pages = 0
        self.watches_refused = False
        """While set, new watches get 503 (an API server restarting): clients retry, and miss what happens."""
        self.watchers: dict[Any, set[asyncio.Queue[JSONDict | None]]] = collections.defaultdict(set)
        self.resources.load_bundled()

    # ----- registration and seeding (run on the emulator's loop) -----

    def register_crd(self, crd: JSONDict) -> None:
        spec = crd["spec"]
        names = spec["names"]
        for version in spec["versions"]:
            res = kmock.resource(spec["group"], version["name"], names["plural"])
            self.resources[res] = kmock.ResourceInfo(
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()),
                shortnames=set(names.get("shortNames", [])),
                categories=set(names.get("categories", [])),
                verbs={"list", "watch", "get", "patch", "create", "update", "delete"},
                subresources={"status"} if "status" in version.get("subresources", {}) else set(),
            )
            schema = version.get("schema", {}).get("openAPIV3Schema")
            if schema:
                self.schemas[res] = jsonschema.Draft7Validator(schema)
            self.columns[res] = list(version.get("additionalPrinterColumns", []))

    def find_resource(self, api_version: str, kind: str) -> Any:
        """The served resource for a kind; an old apiVersion (apps/v1beta1) maps to the preferred one."""
        group = api_version.rpartition("/")[0]
        candidates = [r for r in self.resources if r.group == group and self.resources[r].kind == kind]
        exact = [r for r in candidates if f"{group}/{r.version}".lstrip("/") == api_version]
        if exact:
            return exact[0]
        if not candidates:
            raise KeyError(f"no resource serves {api_version} {kind}")
        return max(candidates, key=lambda r: _version_rank(r.version))

    def _stamp_new(self, res: Any, body: JSONDict, namespace: str | None) -> JSONDict:
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + secrets.token_hex(3)
        info = self.resources[res]
        if info.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        else:
            meta.pop("namespace", None)
        for key in ("deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        self.resource_version += 1
        meta["resourceVersion"] = str(self.resource_version)
        body["apiVersion"] = f"{res.group}/{res.version}".lstrip("/")
        body["kind"] = info.kind
        if "status" in info.subresources and body.get("kind") not in ("Namespace",):
            body.pop("status", None)
        return body

    def seed(self, body: JSONDict, *, keep_status: bool = True) -> JSONDict:
        """Store a captured live object as it is (its status included), with fresh server metadata."""
        res = self.find_resource(str(body.get("apiVersion", "")), str(body.get("kind", "")))
        status = body.get("status")
        stored = self._stamp_new(res, body, body.get("metadata", {}).get("namespace"))
        if keep_status and status is not None:
            stored["status"] = status
        meta = stored["metadata"]
        self._objects[res, meta.get("namespace"), meta["name"]] = stored
        self._emit(res, "ADDED", stored)
        return stored

    # ----- watch events: one history, fanned out to the open watches -----

    def _emit(self, res: Any, kind: str, body: JSONDict) -> None:
        """Record a change (DELETED gets a version of its own, as on the API server) and tell open watches."""
        body = copy.deepcopy(body)
        if kind == "DELETED":
            self.resource_version += 1
            body.setdefault("metadata", {})["resourceVersion"] = str(self.resource_version)
        event = {"type": kind, "object": body}
        self.history.append((int(body["metadata"]["resourceVersion"]), res, event))
        while len(self.history) > self.history_limit:
            self.compacted_rv = self.history.popleft()[0] + 1
        for queue in self.watchers.get(res, ()):
            queue.put_nowait(event)

    def expire_history(self) -> None:
        """Forget every past event: resuming a watch or a paginated LIST from before now gets 410 Expired."""
        self.history.clear()
        self.compacted_rv = self.resource_version

    def break_watches(self) -> int:
        """End every open watch stream (as an API server restart does); returns how many were open."""
        count = 0
        for queues in self.watchers.values():
            for queue in queues:
                queue.put_nowait(None)
                count += 1
        return count

    def open_watches(self, plural: str | None = None) -> int:
        return sum(len(q) for res, q in self.watchers.items() if plural is None or res.plural == plural)

    # ----- request handling -----

    def _error(self, status: int, reason: str, message: str) -> aiohttp.web.Response:
        return aiohttp.web.json_response(
            {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
             "code": status, "reason": reason, "message": message},
            status=status,
        )

    def _validate(self, res: Any, body: JSONDict) -> str | None:
        validator = self.schemas.get(res)
        if validator is None:
            return None
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        if not errors:
            return None
        return "; ".join(
            f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}" for e in errors[:5]
        )

    @staticmethod
    def _verb(request: rendering.Request) -> str:
        action = request.action
        if action == enums.action.UPDATE:
            return "update" if request.method == enums.method.PUT else "patch"
        if action == enums.action.DELETE:
            return "delete" if request.name else "deletecollection"
        if action == enums.action.FETCH:
            return "get"
        return str(action.value).lower() if action else request.method.value.lower()

    def _rbac_objects(self) -> list[JSONDict]:
        return [obj.raw for (res, _, _), obj in self._objects.items()
                if res.group == "rbac.authorization.k8s.io" and not obj.deleted]

    def _refusal(self, request: rendering.Request) -> aiohttp.web.Response | None:
        """403 when an impersonation is not allowed, or the impersonated identity may not do this request."""
        verb = self._verb(request)
        try:
            raw = request._raw_request  # kmock keeps only the last value of repeated headers in `headers`
            impersonation = impersonated_identity(raw.headers if raw is not None else CIMultiDict(request.headers))
        except ValueError as exc:
            return self._error(400, "BadRequest", str(exc))
        if impersonation is None:
            self.audit.append((self.requester.user, verb, request.url.path))
            return None
        who, checks = impersonation
        rbac = self._rbac_objects()
        for check in checks:
            if not authorize(rbac, self.requester, check):
                where = f' in the namespace "{check.namespace}"' if check.namespace else ""
                return self._error(
                    403, "Forbidden",
                    f'{check.resource} "{check.name}" is forbidden: User "{self.requester.user}" cannot '
                    f'impersonate resource "{check.resource}" in API group ""{where}')
        self.audit.append((who.user, verb, request.url.path))
        res = request.resource
        if res is None or res.plural is None:
            return None  # discovery, /version: open to every authenticated user
        resource = f"{res.plural}/{request.subresource}" if request.subresource else res.plural
        attrs = Attributes(verb, res.group, resource, request.namespace or "", request.name or "")
        if authorize(rbac, who, attrs):
            return None
        named = f' "{request.name}"' if request.name else ""
        where = f' in the namespace "{request.namespace}"' if request.namespace else ""
        return self._error(
            403, "Forbidden",
            f'{resource}{named} is forbidden: User "{who.user}" cannot {verb} resource "{resource}" '
            f'in API group "{res.group}"{where}')

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        res = request.resource
        if res is None or res.plural is None or res.version is None:
            return await super()._handle(request)
        if (res.group, res.plural) in self.forbidden:
            verb = str(request.action.value).lower() if request.action else request.method.value.lower()
            return self._error(
                403, "Forbidden",
                f'{res.plural}.{res.group} is forbidden: User "system:serviceaccount:kubedrift:kubedrift" '
                f'cannot {verb} resource "{res.plural}" in API group "{res.group}"',
            )
        known = res in self.resources
        if not known and request.action in (enums.action.CREATE, enums.action.LIST):
            # As the API server: a resource it does not serve (a CRD not installed) is not found.
            return self._error(404, "NotFound", "the server could not find the requested resource")
        if request.method == enums.method.PUT and request.name:
            return await self._replace(request)
        if request.action == enums.action.CREATE and known:
            return await self._create(request)
        if request.action == enums.action.UPDATE and known:
            return await self._patch(request)
        if request.action == enums.action.DELETE and request.name and known:
            return await self._delete(request)
        if request.action == enums.action.LIST and known:
            return await self._list(request)
        if request.action == enums.action.WATCH and known and request.name is None:
            return await self._watch(request)
        if request.action == enums.action.FETCH and known and request.subresource in (None, "status"):
            return await self._fetch(request)
        return await super()._handle(request)

    def _key(self, request: rendering.Request) -> tuple[Any, str | None, str]:
        assert request.name is not None
        return (request.resource, request.namespace, request.name)

    def _current(self, request: rendering.Request) -> JSONDict | None:
        key = self._key(request)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def _not_found(self, request: rendering.Request) -> aiohttp.web.Response:
        res = request.resource
        return self._error(404, "NotFound", f'{res.plural}.{res.group} "{request.name}" not found')

    async def _fetch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        async with self._lock:
            body = self._current(request)
        if body is None:
            return self._not_found(request)
        if "as=Table" in request.headers.get("Accept", "") and request.resource in self.columns:
            return aiohttp.web.json_response(self._table(request.resource, [body]))
        return aiohttp.web.json_response(body)

    async def _create(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if not isinstance(request.data, dict):
            return self._error(400, "BadRequest", "the body of the request was in an unknown format")
        async with self._lock:
            body = self._stamp_new(res, request.data, request.namespace)
            meta = body["metadata"]
            if not meta.get("name"):
                return self._error(422, "Invalid", "metadata.name: Required value: name or generateName is required")
            problem = self._validate(res, body)
            if problem:
                return self._error(422, "Invalid", f"{body['kind']}.{res.group} {meta['name']!r} is invalid: {problem}")
            key = (res, meta.get("namespace"), meta["name"])
            if key in self._objects and not self._objects[key].deleted:
                return self._error(409, "AlreadyExists", f'{res.plural}.{res.group} "{meta["name"]}" already exists')
            if request.params.get("dryRun") == "All":
                self.resource_version -= 1  # nothing was stored
                return aiohttp.web.json_response(body, status=201)
            if key in self._objects:
                self._objects[key].create(body)
            else:
                self._objects[key] = body
            self._emit(res, "ADDED", body)
        return aiohttp.web.json_response(body, status=201)

    def _apply_patch(self, old: JSONDict, request: rendering.Request) -> JSONDict:
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if content_type == "application/json-patch+json" or isinstance(request.data, list):
            return jsonpatch.apply_patch(old, request.data, in_place=False)  # type: ignore[no-any-return]
        if content_type == APPLY_PATCH:
            return self._applied(old, request)
        # merge-patch+json and (approximately) strategic-merge-patch+json
        patched = merge_patch(old, request.data)
        assert isinstance(patched, dict)
        return patched

    def _applied(self, old: JSONDict, request: rendering.Request) -> JSONDict:
        if not request.params.get("fieldManager"):
            raise ValueError("PATCH, fieldManager: Required value: is required for apply patch")
        config = request.data if isinstance(request.data, dict) else yaml.safe_load(request.text or "")
        if not isinstance(config, dict):
            raise ValueError("apply patch: the body is not an object")
        meta = config.get("metadata") or {}
        if meta.get("name") not in (None, request.name):
            raise ValueError("apply patch: metadata.name does not match the URL")
        merged = apply_merge(old, {k: v for k, v in config.items() if k not in ("apiVersion", "kind")})
        assert isinstance(merged, dict)
        return merged

    async def _apply_create(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """Server-side apply of an object that does not exist: it is created."""
        try:
            config = self._applied({}, request)
        except ValueError as exc:
            return self._error(422, "Invalid", str(exc))
        config.setdefault("metadata", {})["name"] = request.name
        res = request.resource
        body = self._stamp_new(res, config, request.namespace)
        problem = self._validate(res, body)
        if problem:
            return self._error(422, "Invalid", f"{body['kind']}.{res.group} {request.name!r} is invalid: {problem}")
        if request.params.get("dryRun") == "All":
            self.resource_version -= 1
            return aiohttp.web.json_response(body, status=201)
        key = (res, body["metadata"].get("namespace"), request.name)
        if key in self._objects:
            self._objects[key].create(body)
        else:
            self._objects[key] = body
        await self._buses[res].put({"type": "ADDED", "object": copy.deepcopy(body)})
        return aiohttp.web.json_response(body, status=201)

    async def _store_update(self, request: rendering.Request, old: JSONDict, new: JSONDict) -> JSONDict | str:
        """Apply API-server rules to a changed object and store it; returns it, or a 422 message."""
        res = request.resource
        info = self.resources[res]
        has_status = "status" in info.subresources
        if request.subresource == "status":
            new = dict(old, status=new.get("status")) if new.get("status") is not None else {
                k: v for k, v in old.items() if k != "status"}
        elif has_status:
            new = {k: v for k, v in new.items() if k != "status"}
            if "status" in old:
                new["status"] = old["status"]
        new_meta = new.setdefault("metadata", {})
        old_meta = old.get("metadata", {})
        for key in ("uid", "creationTimestamp", "name", "namespace", "generation", "deletionTimestamp"):
            if key in old_meta:
                new_meta[key] = old_meta[key]
            else:
                new_meta.pop(key, None)
        new["apiVersion"], new["kind"] = old.get("apiVersion"), old.get("kind")
        if old_meta.get("deletionTimestamp") and len(new_meta.get("finalizers") or []) > len(
            old_meta.get("finalizers") or []
        ):
            return "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted"

        def essence(o: JSONDict) -> JSONDict:
            return {k: v for k, v in o.items() if k not in ("metadata", "status", "apiVersion", "kind")}

        if essence(old) != essence(new):
            new_meta["generation"] = int(old_meta.get("generation", 1)) + 1
        problem = self._validate(res, new)
        if problem:
            return problem
        if new == old:
            return new  # a no-op write does not bump resourceVersion (as the API server)
        if request.params.get("dryRun") == "All":
            return new
        self.resource_version += 1
        new_meta["resourceVersion"] = str(self.resource_version)
        obj = self._objects[self._key(request)]
        obj.history.append(new)
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            obj.delete()
            self._emit(res, "DELETED", new)
        else:
            self._emit(res, "MODIFIED", new)
        return new

    async def _patch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        async with self._lock:
            old = self._current(request)
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            if old is None and content_type == APPLY_PATCH and request.subresource is None:
                return await self._apply_create(request)
            if old is None:
                return self._not_found(request)
            try:
                new = self._apply_patch(copy.deepcopy(old), request)
            except jsonpatch.JsonPatchTestFailed as exc:
                return self._error(422, "Invalid", f"the server rejected our request: {exc}")
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, ValueError) as exc:
                return self._error(422, "Invalid", str(exc))
            stored = await self._store_update(request, old, new)
        if isinstance(stored, str):
            return self._error(422, "Invalid", stored)
        return aiohttp.web.json_response(stored)

    async def _replace(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if not isinstance(request.data, dict):
            return self._error(400, "BadRequest", "the body of the request was in an unknown format")
        async with self._lock:
            old = self._current(request)
            if old is None:
                return self._not_found(request)
            wanted = str(request.data.get("metadata", {}).get("resourceVersion") or "")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                return self._error(
                    409, "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            stored = await self._store_update(request, old, copy.deepcopy(request.data))
        if isinstance(stored, str):
            return self._error(422, "Invalid", stored)
        return aiohttp.web.json_response(stored)

    async def _delete(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        async with self._lock:
            old = self._current(request)
            if old is None:
                return self._not_found(request)
            obj = self._objects[self._key(request)]
            meta = old["metadata"]
            if meta.get("finalizers"):
                if not meta.get("deletionTimestamp"):
                    meta["deletionTimestamp"] = _now()
                    self.resource_version += 1
                    meta["resourceVersion"] = str(self.resource_version)
                    obj.history.append(old)
                    self._emit(res, "MODIFIED", old)
                return aiohttp.web.json_response(old, status=202)
            obj.delete()
            self._emit(res, "DELETED", old)
        return aiohttp.web.json_response(
            {"apiVersion": "v1", "kind": "Status", "status": "Success", "details": {"name": request.name}}
        )

    def _matching(self, request: rendering.Request, obj: JSONDict) -> bool:
        meta = obj.get("metadata", {})
        return ((request.namespace is None or meta.get("namespace") == request.namespace)
                and _selector_matches(meta.get("labels") or {}, request.params.get("labelSelector", ""))
                and _field_selector_matches(obj, request.params.get("fieldSelector", "")))

    async def _list(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        token = request.params.get("continue", "")
        after: tuple[str, str] | None = None
        async with self._lock:
            version = str(self.resource_version)
            if token:
                try:
                    decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
                    version, after = str(decoded["rv"]), (str(decoded["after"][0]), str(decoded["after"][1]))
                except (ValueError, KeyError, IndexError, TypeError):
                    return self._error(400, "BadRequest", "invalid continue token")
                if int(version) < self.compacted_rv:
                    return self._error(410, "Expired", "The provided continue parameter is too old to display a "
                                       "consistent list result. You can start a new list without the continue "
                                       "parameter.")
            raw = [
                obj.raw
                for (r, ns, _), obj in self._objects.items()
                if r == res and not obj.deleted and (request.namespace is None or ns == request.namespace)
            ]
            raw = [o for o in raw if self._matching(request, o)]
            raw.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
            if after is not None:
                raw = [o for o in raw if (o["metadata"].get("namespace") or "", o["metadata"]["name"]) > after]
            limit = int(request.params.get("limit") or 0)
            remaining = len(raw) - limit if 0 < limit < len(raw) else 0
            items = [copy.deepcopy(o) for o in (raw[:limit] if remaining else raw)]  # copy only what is sent
        metadata: JSONDict = {"resourceVersion": version}
        if remaining:
            last = items[-1]["metadata"]
            metadata["continue"] = base64.urlsafe_b64encode(json.dumps(
                {"rv": int(version), "after": [last.get("namespace") or "", last["name"]]}).encode()).decode()
            metadata["remainingItemCount"] = remaining
        if "as=Table" in request.headers.get("Accept", "") and res in self.columns:
            table = self._table(res, items, version)
            table["metadata"] = metadata
            return aiohttp.web.json_response(table)
        self.list_pages += 1
        kind = self.resources[res].kind
        return aiohttp.web.json_response({
            "apiVersion": f"{res.group}/{res.version}".lstrip("/"),
            "kind": f"{kind}List",
            "metadata": metadata,
            "items": items,
        })

    async def _watch(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        """A watch stream: replay (all objects, or the history after `resourceVersion`), then live events."""
        if self.watches_refused:
            return self._error(503, "ServiceUnavailable", "the API server is restarting")
        res = request.resource
        since = request.params.get("resourceVersion") or ""
        bookmarks = request.params.get("allowWatchBookmarks") == "true"
        try:
            timeout = float(request.params.get("timeoutSeconds") or 1800)
            start = int(since) if since else 0
        except ValueError:
            return self._error(400, "BadRequest", "invalid resourceVersion or timeoutSeconds")
        queue: asyncio.Queue[JSONDict | None] = asyncio.Queue()
        expired = False
        async with self._lock:
            if start == 0:
                replay = [{"type": "ADDED", "object": copy.deepcopy(obj.raw)}
                          for (r, _, _), obj in self._objects.items() if r == res and not obj.deleted]
            elif start < self.compacted_rv:
                replay, expired = [], True
            else:
                replay = [event for rv, r, event in self.history if r == res and rv > start]
            if not expired:
                self.watchers[res].add(queue)  # under the lock: no event falls between replay and stream
        raw = request._raw_request
        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw)

        async def send(event: JSONDict) -> None:
            await response.write(json.dumps(event).encode() + b"\n")

        try:
            if expired:
                await send({"type": "ERROR", "object": {
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "code": 410,
                    "reason": "Expired", "message": f"too old resource version: {start} ({self.compacted_rv})"}})
                return response
            last = start
            for event in replay:
                if self._matching(request, event["object"]):
                    await send(event)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while (remaining := deadline - loop.time()) > 0:
                wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                try:
                    event = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if bookmarks and deadline - loop.time() > 0:
                        await send({"type": "BOOKMARK", "object": {
                            "kind": self.resources[res].kind, "apiVersion": f"{res.group}/{res.version}".lstrip("/"),
                            "metadata": {"resourceVersion": str(self.resource_version)}}})
                    continue
                if event is None:
                    break  # break_watches()
                version = int(event["object"]["metadata"]["resourceVersion"])
                if version > last and self._matching(request, event["object"]):
                    await send(event)
                last = max(last, version)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            self.watchers[res].discard(queue)
        return response

    def _table(self, res: Any, items: Iterable[JSONDict], version: str = "") -> JSONDict:
        # As the API server: Name, then the CRD's columns as declared (priorities kept); Age only without any.
        columns = self.columns[res] or [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        definitions = [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}]
        definitions += [
            {"name": c["name"], "type": c.get("type", "string"), "format": c.get("format", ""),
             "description": c.get("description", ""), "priority": c.get("priority", 0)}
            for c in columns
        ]
        rows = []
        for item in items:
            meta = item.get("metadata", {})
            cells: list[Any] = [meta.get("name")]
            for c in columns:
                value = _json_path(item, c["jsonPath"])
                cells.append(_human_age(value) if c.get("type") == "date" and value else value)
            rows.append({
                "cells": cells,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta},
            })
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": version},
                "columnDefinitions": definitions, "rows": rows}

    # ----- discovery: deterministic preferred versions, correct core groupVersion -----

    async def _serve_apis(self, request: rendering.Request) -> Any:
        payload = await super()._serve_apis(request)
        for group in payload["groups"]:
            self._sort_versions(group)
        return payload

    async def _serve_group(self, request: rendering.Request) -> Any:
        payload = await super()._serve_group(request)
        self._sort_versions(payload)
        return payload

    async def _serve_version(self, request: rendering.Request) -> Any:
        payload = await super()._serve_version(request)
        payload["groupVersion"] = payload["groupVersion"].lstrip("/")
        for entry in payload["resources"]:
            if "/" in entry["name"]:  # subresources carry no short names or categories
                entry["shortNames"], entry["categories"] = [], []
        return payload

    @staticmethod
    def _sort_versions(group: JSONDict) -> None:
        group["versions"].sort(key=lambda v: _version_rank(v["version"]), reverse=True)
        group["preferredVersion"] = dict(group["versions"][0])


class EmulatorServer:
    """Runs an ApiEmulator on 127.0.0.1 in a background thread."""

    def __init__(self) -> None:
        self.emulator = ApiEmulator()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="api-emulator", daemon=True)
        self._server: Any = None
        self._stack: list[Any] = []

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    def run(self, fn: Any, *args: Any) -> Any:
        """Run a plain function on the emulator's loop (the emulator is not thread-safe)."""

        async def wrapper() -> Any:
            async with self.emulator._lock:
                return fn(*args)

        return self.call(wrapper())

    def start(self) -> EmulatorServer:
        self._thread.start()

        async def enter() -> None:
            await self.emulator.__aenter__()
            self._server = kmock.Server(self.emulator)
            await self._server.__aenter__()

        self.call(enter())
        return self

    def stop(self) -> None:
        async def leave() -> None:
            await self._server.__aexit__(None, None, None)
            await self.emulator.__aexit__(None, None, None)

        try:
            self.call(leave())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": "test-token"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester",
                                                           "namespace": namespace}}],
            "current-context": "emulator",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    def register_crd_file(self, path: Path) -> None:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                self.run(self.emulator.register_crd, doc)

    def seed(self, body: JSONDict) -> JSONDict:
        return self.run(self.emulator.seed, body)  # type: ignore[no-any-return]

    def audit(self) -> list[tuple[str, str, str]]:
        """(user, verb, path) of every request so far."""
        return self.run(lambda: list(self.emulator.audit))  # type: ignore[no-any-return]

    def install_crds(self, repo: Path) -> None:
        """Every CRD the install defines: kubedrift's (crds/) and kopf's peering ones (deploy/peering.yaml)."""
        for crd in sorted((repo / "crds").glob("*.yaml")):
            self.register_crd_file(crd)
        self.install_peering(repo)

    def install_peering(self, repo: Path) -> None:
        """deploy/'s kopf peering CRDs, as the install applies them (the operator creates the object)."""
        self.install_file(repo / "deploy" / "peering.yaml")

    def install_file(self, path: Path, namespace: str | None = None) -> None:
        """What `kubectl apply -f` would do with a manifest file: CRDs registered, the other objects stored
        (namespaced ones in `namespace` when given)."""
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        for doc in docs:
            if doc.get("kind") == "CustomResourceDefinition":
                self.run(self.emulator.register_crd, doc)
        for doc in docs:
            if doc.get("kind") != "CustomResourceDefinition":
                if namespace and doc.get("metadata", {}).get("namespace"):
                    doc = {**doc, "metadata": {**doc["metadata"], "namespace": namespace}}
                self.seed(doc)

    def expire_history(self) -> None:
        """Resuming any watch (or paginated LIST) from before now gets 410 Expired."""
        self.run(self.emulator.expire_history)

    def break_watches(self) -> int:
        """Cut every open watch stream; returns how many there were."""
        return self.run(self.emulator.break_watches)  # type: ignore[no-any-return]

    def open_watches(self, plural: str | None = None) -> int:
        return self.run(self.emulator.open_watches, plural)  # type: ignore[no-any-return]

    def refuse_watches(self, refused: bool = True) -> None:
        """While refused, every open watch is cut and new ones get 503: their clients miss what happens."""
        self.emulator.watches_refused = refused
        if refused:
            self.break_watches()

    def forbid(self, group: str, plural: str) -> None:
        self.emulator.forbidden.add((group, plural))

    def allow(self, group: str, plural: str) -> None:
        self.emulator.forbidden.discard((group, plural))

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> JSONDict | None:
        def read() -> JSONDict | None:
            res = self.emulator.find_resource(api_version, kind)
            key = (res, namespace, name)
            if key not in self.emulator._objects or self.emulator._objects[key].deleted:
                return None
            return copy.deepcopy(self.emulator._objects[key].raw)

        return self.run(read)  # type: ignore[no-any-return]


def json_dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
