"""Typed errors that become OpenAI-style JSON in one place (the error middleware).

Handlers raise; they never build error bodies themselves, so every route answers errors in the
shape the `openai` client parses (`{"error": {"message", "type", "param", "code"}}`).
"""

from __future__ import annotations

import json
from typing import Any


class WardenError(Exception):
    status = 500
    type = "server_error"
    code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers = headers or {}
        if code is not None:
            self.code = code

    def body(self, shape: str = "openai") -> dict[str, Any]:
        """The error as the route's clients parse it: OpenAI's shape, or Anthropic's on the Messages API."""
        if shape == "anthropic":
            return anthropic_error_body(self.message, self.status, self.type)
        return error_body(self.message, self.type, self.code, self.param)


class InvalidRequest(WardenError):
    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContentBlocked(WardenError):
    """The request itself broke policy (a blocked completion instead ends with content_filter)."""

    status = 400
    type = "invalid_request_error"
    code = "content_policy_violation"


class ModelNotFound(WardenError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"


class RouteNotFound(WardenError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(WardenError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeout(WardenError):
    status = 408
    type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLarge(WardenError):
    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class Overloaded(WardenError):
    """Every backend slot is taken and the wait queue is full: the client should retry later."""

    status = 429
    type = "rate_limit_error"
    code = "overloaded"


class AuthenticationFailed(WardenError):
    """No key, an unknown key, a forged or revoked one: the same answer for all, the key never echoed."""

    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class PermissionDenied(WardenError):
    """A valid key asking for what its tenant may not use, or a suspended key."""

    status = 403
    type = "permission_error"
    code = "permission_denied"


class RateLimited(WardenError):
    """A tenant's own limit (requests, tokens, concurrency) or an abuse throttle."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limit_exceeded"


class Unavailable(WardenError):
    """No healthy backend could take the request in time."""

    status = 503
    type = "server_error"
    code = "upstream_unavailable"


class UpstreamError(WardenError):
    """The backend failed (refused, reset, timed out, or answered 5xx) and no retry was left."""

    status = 502
    type = "server_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def anthropic_error_body(message: str, status: int, type_: str) -> dict[str, Any]:
    """`{"type": "error", "error": {"type", "message"}}` with Anthropic's type names, which go by status."""
    kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 503: "overloaded_error"}
    kind = kinds.get(status, "invalid_request_error" if status < 500 else "api_error")
    if type_ == "rate_limit_error":
        kind = "rate_limit_error"
    return {"type": "error", "error": {"type": kind, "message": message}}


def sse_error_event(message: str, code: str = "upstream_error") -> bytes:
    """An error the `openai` client raises as APIError when it meets it inside a stream."""
    payload = json.dumps(error_body(message, "server_error", code))
    return f"data: {payload}\n\n".encode()
