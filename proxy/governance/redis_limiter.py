"""Limits shared by replicas: the same buckets as in memory, kept in Redis and changed by Lua scripts.

Each admission is one script run: refill, check every limit, take from all or from none, so
replicas never over-admit between them (Redis runs one script at a time). Time comes from the
Redis server's clock, so replicas' clocks need not agree. Concurrency slots are a sorted set of
request ids scored by their start; a slot older than its time-to-live is taken back, so a replica
that dies holding slots does not lock its tenant out for good.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from proxy.governance.limits import Grant, Limits, Refusal, rate_headers

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("warden.governance.redis")
BUCKET_TTL_MS = 600_000  # an idle bucket is full again long before this; debt older than this is forgiven

_LEVEL = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function level(key, rate, now)
  local v = redis.call('HMGET', key, 'level', 'stamp')
  local lvl, stamp = tonumber(v[1]), tonumber(v[2])
  if lvl == nil then return rate end
  return math.min(rate, lvl + (now - stamp) * rate / 60000)
end
"""

# KEYS: requests bucket, tokens bucket, slots. ARGV: rpm, tpm, charge, max concurrency, slot id, slot ttl ms
ADMIT = _LEVEL + """
local rpm, tpm, charge, maxc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local rl, tl = -1, -1
if rpm > 0 then rl = level(KEYS[1], rpm, now) end
if tpm > 0 then tl = level(KEYS[2], tpm, now) end
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[6]))
  if redis.call('ZCARD', KEYS[3]) >= maxc then
    return {0, 'concurrency_limit_exceeded', '1000', tostring(rl), tostring(tl)}
  end
end
if rpm > 0 and rl < 1 then
  return {0, 'rate_limit_exceeded', tostring((1 - rl) * 60000 / rpm), tostring(rl), tostring(tl)}
end
local need = math.min(charge, tpm)
if tpm > 0 and tl < need then
  return {0, 'tokens_rate_limit_exceeded', tostring((need - tl) * 60000 / tpm), tostring(rl), tostring(tl)}
end
if rpm > 0 then
  rl = rl - 1
  redis.call('HSET', KEYS[1], 'level', tostring(rl), 'stamp', now)
  redis.call('PEXPIRE', KEYS[1], BUCKET_TTL)
end
if tpm > 0 then
  tl = tl - charge
  redis.call('HSET', KEYS[2], 'level', tostring(tl), 'stamp', now)
  redis.call('PEXPIRE', KEYS[2], BUCKET_TTL)
end
if maxc > 0 then
  redis.call('ZADD', KEYS[3], now, ARGV[5])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[6]))
end
return {1, '', '0', tostring(rl), tostring(tl)}
""".replace("BUCKET_TTL", str(BUCKET_TTL_MS))

# KEYS: tokens bucket, slots. ARGV: tpm, tokens owed (used - charged), slot id
SETTLE = _LEVEL + """
redis.call('ZREM', KEYS[2], ARGV[3])
local tpm, owed = tonumber(ARGV[1]), tonumber(ARGV[2])
if tpm > 0 and owed ~= 0 then
  local now = now_ms()
  redis.call('HSET', KEYS[1], 'level', tostring(level(KEYS[1], tpm, now) - owed), 'stamp', now)
  redis.call('PEXPIRE', KEYS[1], BUCKET_TTL)
end
return 1
""".replace("BUCKET_TTL", str(BUCKET_TTL_MS))


def redis_client(url: str, timeout_s: float) -> tuple[Redis, tuple[type[BaseException], ...]]:
    """A client for the shared state (limits, budgets), and the errors that mean "Redis is away"."""
    try:
        import redis.asyncio as aioredis
    except ImportError:
        raise RuntimeError("governance.limiter is redis, but the redis package is not installed "
                           "(pip install 'llm-warden[redis]')") from None
    client = aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    return client, (aioredis.RedisError, OSError, TimeoutError)


class RedisLimiter:
    def __init__(self, url: str, prefix: str, fail_open: bool, on_error: Any, timeout_s: float = 0.5) -> None:
        self.client, self._errors = redis_client(url, timeout_s)
        self.prefix = prefix
        self.fail_open = fail_open
        self.on_error = on_error
        self._admit = self.client.register_script(ADMIT)
        self._settle = self.client.register_script(SETTLE)

    def _keys(self, tenant: str) -> list[str]:
        base = f"{self.prefix}{{{tenant}}}:"  # one hash slot per tenant, so a cluster can run the scripts
        return [base + "requests", base + "tokens", base + "slots"]

    async def admit(self, tenant: str, limits: Limits, charge: int, slot: str, now: float) -> Grant | Refusal:
        rpm, tpm = limits.requests_per_minute or 0, limits.tokens_per_minute or 0
        args: list[int | str] = [rpm, tpm, charge, limits.max_concurrency or 0, slot, int(limits.slot_ttl_s * 1000)]
        try:
            ok, code, wait_ms, rl, tl = await self._admit(keys=self._keys(tenant), args=args)
        except self._errors as exc:
            self.on_error("admit")
            log.warning("shared limiter unavailable (%s): failing %s", type(exc).__name__,
                        "open" if self.fail_open else "closed")
            if self.fail_open:
                return Grant(tenant, "", {}, False)
            return Refusal("limiter_unavailable", "the shared rate limiter is unavailable; retry shortly", 1.0)
        headers = {}
        if rpm:
            headers.update(rate_headers("requests", rpm, float(rl)))
        if tpm:
            headers.update(rate_headers("tokens", tpm, float(tl)))
        if int(ok):
            return Grant(tenant, slot if limits.max_concurrency else "", headers, bool(tpm))
        name = code.decode() if isinstance(code, bytes) else str(code)
        messages = {"concurrency_limit_exceeded": f"at most {limits.max_concurrency} requests at once for this tenant",
                    "rate_limit_exceeded": f"request rate limit of {rpm}/min reached",
                    "tokens_rate_limit_exceeded": f"token rate limit of {tpm}/min reached"}
        return Refusal(name, messages.get(name, name), float(wait_ms) / 1000.0, headers)

    async def settle(self, grant: Grant, tokens_per_minute: int | None, charged: int, used: int,
                     now: float) -> None:
        if not grant.slot and not (tokens_per_minute and used != charged):
            return
        try:
            await self._settle(keys=self._keys(grant.tenant)[1:], args=[tokens_per_minute or 0, used - charged,
                                                                        grant.slot or "-"])
        except self._errors as exc:
            self.on_error("settle")
            log.warning("shared limiter unavailable at settle (%s): the slot expires on its own", type(exc).__name__)

    async def close(self) -> None:
        await self.client.aclose()
