"""Which requests may be cached, and the key an answer is stored under.

Only deterministic requests are cached: `temperature` 0 or a fixed integer `seed`, or any
request whose client opts in (`X-Warden-Cache: force`). The key is a hash of the route, the
model group, the tenant (or `*` when tenants share) and the body as it is sent upstream, after
request-side redaction, normalised so that spellings of the same request agree: keys sorted,
`null` fields dropped, `1.0` written as `1`, a missing `stream` read as false.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxy.errors import InvalidRequest

CACHE_HEADER = "X-Warden-Cache"  # request: bypass | refresh | force; response: hit | miss | coalesced | bypass
KEY_VERSION = 1  # bump when normalisation changes, so a shared store never serves an old spelling's answer


@dataclass(frozen=True, slots=True)
class Directives:
    """What the client asked of the cache: read it, write it, cache even a sampled request."""

    read: bool = True
    write: bool = True
    force: bool = False


def directives(headers: Mapping[str, str]) -> Directives:
    control = {t.strip().lower() for t in headers.get("Cache-Control", "").split(",")}
    asked = headers.get(CACHE_HEADER, "").strip().lower()
    if asked not in ("", "bypass", "refresh", "force"):
        raise InvalidRequest(f"{CACHE_HEADER} must be bypass, refresh or force", param=CACHE_HEADER,
                             code="invalid_cache_directive")
    if asked == "bypass" or "no-store" in control:
        return Directives(read=False, write=False)
    # HTTP's no-cache: do not answer from the cache, but a fresh answer may be stored.
    read = asked != "refresh" and "no-cache" not in control
    return Directives(read=read, write=True, force=asked == "force")


def deterministic(payload: Mapping[str, Any]) -> bool:
    temperature = payload.get("temperature")
    if _number(temperature) and temperature == 0:
        return True
    seed = payload.get("seed")
    return isinstance(seed, int) and not isinstance(seed, bool)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def normalise(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def cache_key(route: str, group: str, namespace: str, payload: Mapping[str, Any]) -> str:
    body = normalise(dict(payload))
    body["stream"] = bool(body.get("stream"))
    material = json.dumps([KEY_VERSION, route, group, namespace, body], sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()
