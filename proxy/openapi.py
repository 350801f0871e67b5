"""The OpenAPI description of Warden's own routes, served at GET /openapi.json.

It describes what Warden itself answers (validation, errors, health, admin), not the model
server's schemas: bodies it relays are left open (`additionalProperties`), so a fuzzer driven
by this description probes Warden's parsing and error mapping, and every error it documents is
the OpenAI shape that errors.py produces.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ERROR_REF}}}


def _ok(schema: dict[str, Any], description: str = "OK", media: str = JSON) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


OPEN_OBJECT: dict[str, Any] = {"type": "object", "additionalProperties": True}
ERRORS = {"default": _error_response("an OpenAI-shaped error (4xx from Warden, 5xx from the upstream path)")}


def _openai_post(summary: str, extra: dict[str, Any]) -> dict[str, Any]:
    body = {
        "type": "object",
        "required": ["model"],
        "properties": {"model": {"type": "string", "minLength": 1}, "stream": {"type": "boolean"}, **extra},
        "additionalProperties": True,
    }
    return {"post": {
        "summary": summary,
        "requestBody": {"required": True, "content": {JSON: {"schema": body}}},
        "responses": {"200": {"description": "the model server's answer, relayed (JSON or an SSE stream)",
                              "content": {JSON: {"schema": OPEN_OBJECT}, "text/event-stream": {"schema": {
                                  "type": "string"}}}}, **ERRORS},
    }}


def _admin(method: str, summary: str, status: str = "200", body: dict[str, Any] | None = None,
           params: tuple[str, ...] = ()) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "security": [{"admin": []}],
                                 "responses": {status: _ok(OPEN_OBJECT), **ERRORS}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    if params:
        operation["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                   for p in params]
    return {method: operation}


def openapi_spec(version: str = "0.1.0") -> dict[str, Any]:
    messages = {"type": "array", "items": OPEN_OBJECT}
    prompt = {"oneOf": [{"type": "string"}, {"type": "array"}]}
    model = {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}}
    paths: dict[str, Any] = {
        "/v1/chat/completions": _openai_post("chat completion, scanned and relayed", {"messages": messages}),
        "/v1/completions": _openai_post("text completion, scanned and relayed", {"prompt": prompt}),
        "/v1/embeddings": _openai_post("embeddings, request scanned, relayed", {"input": prompt}),
        "/v1/models": {"get": {"summary": "models of every available backend, merged", "responses": {
            "200": _ok({"type": "object", "required": ["data"],
                        "properties": {"object": {"type": "string"}, "data": {"type": "array", "items": model}}}),
            **ERRORS}}},
        "/healthz": {"get": {"summary": "the process is alive", "responses": {"200": _ok(OPEN_OBJECT)}}},
        "/readyz": {"get": {"summary": "every group has an available backend", "responses": {
            "200": _ok(OPEN_OBJECT), "503": _ok(OPEN_OBJECT, "not ready")}}},
        "/metrics": {"get": {"summary": "Prometheus text format", "responses": {
            "200": _ok({"type": "string"}, media="text/plain")}}},
        "/openapi.json": {"get": {"summary": "this description", "responses": {"200": _ok(OPEN_OBJECT)}}},
        "/admin/keys": {
            **_admin("get", "list API keys (public parts only)"),
            **_admin("post", "create a key in the keys file", "201", {
                "type": "object", "required": ["tenant"],
                "properties": {"tenant": {"type": "string"}, "name": {"type": "string"}}}),
        },
        "/admin/keys/{key_id}/rotate": _admin("post", "rotate a key", params=("key_id",)),
        "/admin/keys/{key_id}": _admin("delete", "revoke a key", params=("key_id",)),
        "/admin/abuse": _admin("get", "active throttles and suspensions"),
        "/admin/abuse/{subject}": _admin("delete", "lift a throttle or suspension", params=("subject",)),
        "/admin/reload": _admin("post", "reload the config file (a bad one is refused with its errors)"),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Warden", "version": version,
                 "description": "An OpenAI-compatible governance proxy; other /v1/* routes pass through."},
        "paths": paths,
        "components": {
            "schemas": {"Error": {
                "type": "object", "required": ["error"],
                "properties": {"error": {
                    "type": "object", "required": ["message", "type", "param", "code"],
                    "properties": {"message": {"type": "string", "minLength": 1}, "type": {"type": "string"},
                                   "param": {"type": "string", "nullable": True},
                                   "code": {"type": "string", "nullable": True}}}}}},
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"apiKey": []}],
    }
