"""The OpenAPI 3 document of /api/v1, served at /api/v1/openapi.json."""

from __future__ import annotations

from typing import Any

from kubedrift.store.queries import MAX_LIMIT, MAX_OFFSET

_NULLABLE_TIME = {"type": "string", "format": "date-time", "nullable": True}
_SEVERITY = {"type": "string", "enum": ["low", "medium", "high", "critical"]}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["status", "error"],
        "properties": {"status": {"type": "integer"}, "error": {"type": "string"},
                       "field": {"type": "string"}},
    },
    "Change": {
        "type": "object",
        "required": ["path", "category", "severity"],
        "properties": {
            "path": {"type": "string"}, "desired": {"nullable": True}, "live": {"nullable": True},
            "category": {"type": "string"}, "severity": _SEVERITY,
            "changedBy": {"type": "string"}, "changedAt": {"type": "string"},
        },
    },
    "Record": {
        "type": "object",
        "required": ["policy", "resourceId", "state", "firstSeen", "lastSeen", "occurrences"],
        "properties": {
            "policy": {"type": "string", "description": "namespace/name of the DriftPolicy"},
            "resourceId": {"type": "string", "example": "Deployment:shop:web"},
            "resource": {"type": "object", "nullable": True, "properties": {
                "apiVersion": {"type": "string"}, "kind": {"type": "string"},
                "namespace": {"type": "string"}, "name": {"type": "string"}}},
            "state": {"type": "string", "enum": ["active", "resolved", "none"]},
            "driftState": {"type": "string", "enum": ["drifted", "missing"], "nullable": True},
            "severity": {**_SEVERITY, "nullable": True},
            "score": {"type": "integer", "nullable": True},
            "categories": {"type": "array", "items": {"type": "string"}, "nullable": True},
            "firstSeen": {"type": "string", "format": "date-time"},
            "lastSeen": {"type": "string", "format": "date-time"},
            "resolvedAt": _NULLABLE_TIME,
            "resolution": {"type": "string", "nullable": True},
            "occurrences": {"type": "integer", "description": "scans that saw this drift, over all episodes"},
            "episode": {"type": "integer", "nullable": True,
                        "description": "1 for the first time, +1 each time drift returns after resolution"},
            "desiredHash": {"type": "string", "nullable": True},
            "liveHash": {"type": "string", "nullable": True},
            "revision": {"type": "string", "nullable": True},
            "changes": {"type": "array", "items": {"$ref": "#/components/schemas/Change"}, "nullable": True},
        },
    },
    "Event": {
        "type": "object",
        "required": ["type", "at"],
        "properties": {
            "type": {"type": "string", "enum": ["detected", "changed", "resolved", "untracked"]},
            "at": {"type": "string", "format": "date-time"},
            "episode": {"type": "integer"}, "severity": {**_SEVERITY, "nullable": True},
            "categories": {"type": "array", "items": {"type": "string"}},
            "revision": {"type": "string"}, "durationSeconds": {"type": "number"},
        },
    },
    "RecordWithEvents": {
        "allOf": [
            {"$ref": "#/components/schemas/Record"},
            {"type": "object", "required": ["events"], "properties": {
                "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}},
        ],
    },
    "RecordPage": {
        "type": "object",
        "required": ["items", "total", "limit", "offset"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
            "total": {"type": "integer", "minimum": 0},
            "limit": {"type": "integer"}, "offset": {"type": "integer"},
        },
    },
    "Statistics": {
        "type": "object",
        "required": ["total", "active", "resolved", "untracked", "activePercent", "resolvedPercent",
                     "meanTimeToResolveSeconds"],
        "properties": {
            "total": {"type": "integer"}, "active": {"type": "integer"}, "resolved": {"type": "integer"},
            "untracked": {"type": "integer", "description": "records in state none"},
            "activePercent": {"type": "number"}, "resolvedPercent": {"type": "number"},
            "resolvedEpisodes": {"type": "integer"},
            "meanTimeToResolveSeconds": {"type": "number", "nullable": True},
            "activeBySeverity": {"type": "object", "additionalProperties": {"type": "integer"}},
            "eventsInRetention": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "AnalyzeAccepted": {
        "type": "object",
        "required": ["requested"],
        "properties": {"requested": {"type": "array", "items": {"type": "string"}}},
    },
}


def _param(name: str, schema: dict[str, Any], description: str, where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "schema": schema, "description": description}


_POLICY = _param("policy", {"type": "string", "pattern": "^[^/]+/[^/]+$"}, "DriftPolicy as namespace/name")
_NAMESPACE = _param("namespace", {"type": "string", "minLength": 1}, "namespace of the drifted resource")
_FILTERS = [
    _POLICY,
    _NAMESPACE,
    _param("kind", {"type": "string", "minLength": 1}, "kind of the drifted resource"),
    _param("severity", _SEVERITY, "severity of the drift"),
    _param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100}, "page size"),
    _param("offset", {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0},
           "items to skip"),
]
_STATE = _param("state", {"type": "string", "enum": ["active", "resolved", "none"]}, "record state")


def _json(ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {400: "bad parameter", 401: "missing or rejected bearer token", 403: "not allowed",
            404: "not found", 429: "too many failed authentications from this address (see Retry-After)",
            503: "MongoDB or the Kubernetes API did not answer"}
    return {str(c): _json("#/components/schemas/Error", text[c]) for c in codes}


def _read(summary: str, params: list[dict[str, Any]], ref: str, *extra_errors: int) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": params,
                    "responses": {"200": _json(ref, "OK"), **_errors(400, 401, 403, *extra_errors, 429, 503)}}}


def document() -> dict[str, Any]:
    page = "#/components/schemas/RecordPage"
    return {
        "openapi": "3.0.3",
        "info": {"title": "kubedrift API", "version": "v1",
                 "description": "Drift history and statistics of the kubedrift operator. Every call needs a "
                                "Kubernetes bearer token allowed to list driftreports.kubedrift.dev "
                                "(analyze and hooks/git: patch driftpolicies)."},
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "a Kubernetes service account or user token"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/drift-records": _read("Drift records, most recently seen first", [*_FILTERS, _STATE], page),
            "/api/v1/drift-records/active": _read("Records with active drift", _FILTERS, page),
            "/api/v1/drift-records/resolved": _read("Records whose drift was resolved", _FILTERS, page),
            "/api/v1/drift-records/{resourceId}": _read(
                "The record of one resource (Kind:namespace:name) with its latest events",
                [_param("resourceId", {"type": "string", "minLength": 1}, "Kind:namespace:name", "path"),
                 _POLICY],
                "#/components/schemas/RecordWithEvents", 404),
            "/api/v1/statistics": _read("Totals, active/resolved shares and mean time to resolve",
                                        [_POLICY, _NAMESPACE], "#/components/schemas/Statistics"),
            "/api/v1/analyze": {"post": {
                "summary": "Request a scan now (of one policy, or of all)",
                "parameters": [_POLICY],
                "responses": {"202": _json("#/components/schemas/AnalyzeAccepted", "scan requested"),
                              **_errors(400, 401, 403, 404, 429, 503)},
            }},
            "/api/v1/hooks/git": {"post": {
                "summary": "A Git host's push webhook: fetch and scan now the policies whose spec.source.repoURL is "
                           "the pushed repository (GitHub, Gitea/Forgejo, GitLab payloads), or the policy named",
                "parameters": [_POLICY],
                "requestBody": {"required": False, "content": {"application/json": {"schema": {
                    "type": "object", "description": "the push event; repository.clone_url, repository.ssh_url, "
                                                     "project.git_http_url, ... name the repository"}}}},
                "responses": {"202": _json("#/components/schemas/AnalyzeAccepted", "scans requested"),
                              **_errors(400, 401, 403, 404, 503)},
            }},
            "/api/v1/openapi.json": {"get": {"summary": "This document",
                                             "responses": {"200": {"description": "OpenAPI 3 document"},
                                                           **_errors(401, 403, 429, 503)}}},
        },
    }
