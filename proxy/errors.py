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

    def body(self) -> dict[str, Any]:
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


def sse_error_event(message: str, code: str = "upstream_error") -> bytes:
    """An error the `openai` client raises as APIError when it meets it inside a stream."""
    payload = json.dumps(error_body(message, "server_error", code))
    return f"data: {payload}\n\n".encode()
