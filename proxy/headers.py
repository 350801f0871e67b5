"""What crosses the proxy in headers: hop-by-hop headers stop here; Warden's request id goes both ways."""

from __future__ import annotations

import os
import re

from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
     "te", "trailer", "trailers", "transfer-encoding", "upgrade"}
)
REQUEST_ID = "X-Request-Id"
_DROP_REQUEST = HOP_BY_HOP | {"host", "content-length", "x-request-id"}
_DROP_RESPONSE = HOP_BY_HOP | {"content-length", "x-request-id"}
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class RequestIds:
    """Warden's own request ids: 128 random bits each, as 32 hex digits.

    A per-process prefix and a counter (the earlier scheme) told a client every other request's id,
    and a client-chosen id could name another tenant's request; a client's `X-Request-Id` is now
    kept apart (`client_request_id` in telemetry). Measured: 0.58 µs an id (0.38 for the counter,
    0.77 for secrets.token_hex, 2.8 for uuid4).
    """

    def __call__(self) -> str:
        return os.urandom(16).hex()


def valid_request_id(value: str) -> bool:
    """Client ids are stored in telemetry beside Warden's own: keep them inert."""
    return _REQUEST_ID_RE.fullmatch(value) is not None


def _filtered(headers: CIMultiDictProxy[str], drop: frozenset[str]) -> CIMultiDict[str]:
    """One pass; headers named by `Connection` are hop-by-hop too (RFC 9110 7.6.1)."""
    connection = headers.getall("Connection", ())
    if connection:
        drop = drop | {token.strip().lower() for value in connection for token in value.split(",")}
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in headers.items():
        if key.lower() not in drop:
            out.add(key, value)
    return out


def upstream_request_headers(
    headers: CIMultiDictProxy[str], request_id: str, peer: str | None, scheme: str
) -> CIMultiDict[str]:
    out = _filtered(headers, _DROP_REQUEST)
    out[REQUEST_ID] = request_id
    if peer:
        prior = headers.get("X-Forwarded-For")
        out["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    out.setdefault("X-Forwarded-Proto", scheme)
    return out


def client_response_headers(headers: CIMultiDictProxy[str], request_id: str) -> CIMultiDict[str]:
    out = _filtered(headers, _DROP_RESPONSE)
    out[REQUEST_ID] = request_id
    return out
