"""The `cache:` section of warden.yaml: an exact-match response cache with request coalescing.

Off by default: a cache changes what "a request" costs and means (a hit never reaches a model
server), so an operator turns it on knowingly. See docs/cache.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from proxy.section import Section


class CacheSettings(Section):

    enabled: bool = False
    store: Literal["memory", "redis"] = Field(
        "memory", description="memory: per process, LRU under max_bytes; redis: shared by replicas (its own "
        "maxmemory policy evicts; set allkeys-lru)"
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="for store: redis")
    redis_prefix: str = Field("warden:cache:", description="key prefix in Redis")
    ttl_s: float = Field(600.0, gt=0, description="how long an answer may be served from the cache")
    max_bytes: int = Field(64 * 1024 * 1024, gt=0, description="total size of stored answers; LRU beyond it")
    max_entry_bytes: int = Field(
        1024 * 1024, gt=0,
        description="largest answer stored, and the most a coalesced follower may fall behind its leader",
    )
    coalesce: bool = Field(True, description="identical in-flight requests share one upstream call")
    shared_across_tenants: bool = Field(
        False, description="one tenant's answer may serve another's identical request (each tenant's own "
        "response policy is still applied on every hit)",
    )
    routes: list[Literal["/v1/chat/completions", "/v1/completions"]] = Field(
        default_factory=lambda: ["/v1/chat/completions", "/v1/completions"],  # type: ignore[arg-type]
    )

    @model_validator(mode="after")
    def _entry_fits(self) -> CacheSettings:
        if self.max_entry_bytes > self.max_bytes:
            raise ValueError("max_entry_bytes must not exceed max_bytes")
        return self
