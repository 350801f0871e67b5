"""Budgets shared by Warden replicas on several hosts: the ledger's accounts in Redis, changed by Lua scripts.

One script run checks every hard budget a request meets and reserves from all or none (Redis
runs one script at a time), so replicas never admit past a hard budget between them. Periods
are computed by the replica (calendar periods need the configured time zone) and passed in: an
account whose stored period end differs starts over. A replica that dies with requests in
flight leaves their reservations until the period ends (rolling budgets: until the account has
been idle for two windows). Every key of one request carries its tenant as the hash tag, so a
Redis Cluster can run the scripts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from proxy.governance.budgets import ROLLING_SLOTS, BudgetRef, BudgetRefusal, Charge, Crossing, period_bounds
from proxy.governance.redis_limiter import redis_client

if TYPE_CHECKING:
    pass

log = logging.getLogger("warden.governance.redis")

_LOAD = """
local function load(i, now)
  local b = 2 + (i - 1) * 4
  local amount, hard, stop, window = tonumber(ARGV[b + 1]), ARGV[b + 2], ARGV[b + 3], tonumber(ARGV[b + 4])
  local k = KEYS[i]
  local spent, reserved = 0, tonumber(redis.call('HGET', k, 'reserved') or '0')
  if window > 0 then
    local step = window / SLOTS
    local all = redis.call('HGETALL', k .. ':slots')
    for j = 1, #all, 2 do
      if tonumber(all[j]) + step <= now - window then
        redis.call('HDEL', k .. ':slots', all[j])
      else
        spent = spent + tonumber(all[j + 1])
      end
    end
    redis.call('PEXPIRE', k, math.floor(window * 2000))
    redis.call('PEXPIRE', k .. ':slots', math.floor(window * 2000))
  elseif redis.call('HGET', k, 'end') ~= stop then
    reserved = 0
    redis.call('HSET', k, 'spent', 0, 'reserved', 0, 'end', stop)
    redis.call('PEXPIREAT', k, math.floor((tonumber(stop) + 86400) * 1000))
  else
    spent = tonumber(redis.call('HGET', k, 'spent') or '0')
  end
  return amount, hard, spent, reserved, window
end
""".replace("SLOTS", str(ROLLING_SLOTS))

# KEYS: accounts. ARGV: estimate, now, then per account: amount, hard (1/0), period end, window (0: calendar)
CHARGE = _LOAD + """
local est, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local left = -1
for i = 1, #KEYS do
  local amount, hard, spent, reserved = load(i, now)
  if hard == '1' and (spent + reserved >= amount or spent + reserved + est > amount) then
    return {0, i, tostring(spent)}
  end
  local l = amount - spent - reserved - est
  if left < 0 or l < left then left = l end
end
for i = 1, #KEYS do redis.call('HINCRBYFLOAT', KEYS[i], 'reserved', est) end
return {1, 0, tostring(left)}
"""

# KEYS: accounts. ARGV: estimate, now, then per account as for CHARGE, then the cost. Returns spent before/after.
SETTLE = _LOAD + """
local est, now = tonumber(ARGV[1]), tonumber(ARGV[2])
local cost = tonumber(ARGV[#ARGV])
local out = {}
for i = 1, #KEYS do
  local amount, hard, spent, reserved, window = load(i, now)
  redis.call('HSET', KEYS[i], 'reserved', tostring(math.max(0, reserved - est)))
  if window > 0 then
    local step = window / SLOTS
    redis.call('HINCRBYFLOAT', KEYS[i] .. ':slots', tostring(math.floor(now / step) * step), cost)
  else
    redis.call('HINCRBYFLOAT', KEYS[i], 'spent', cost)
  end
  out[#out + 1] = tostring(spent)
  out[#out + 1] = tostring(spent + cost)
end
return out
""".replace("SLOTS", str(ROLLING_SLOTS))


class RedisLedger:
    def __init__(self, url: str, prefix: str, zone: ZoneInfo, on_error: Any, timeout_s: float = 0.5) -> None:
        self.client, self._errors = redis_client(url, timeout_s)
        self.prefix = prefix
        self.zone = zone
        self.on_error = on_error
        self._charge = self.client.register_script(CHARGE)
        self._settle = self.client.register_script(SETTLE)

    def _args(self, refs: tuple[BudgetRef, ...], estimate: float, now: float) -> tuple[list[str], list[Any]]:
        keys, args = [], [repr(estimate), repr(now)]
        for ref in refs:
            b = ref.budget
            keys.append(f"{self.prefix}{{{ref.tenant}}}:{ref.account}")
            end = "0" if b.window_s is not None else f"{period_bounds(b, now, self.zone)[1]:.0f}"
            args += [repr(b.amount), "1" if b.mode == "hard" else "0", end, repr(b.window_s or 0)]
        return keys, args

    async def charge(self, refs: tuple[BudgetRef, ...], estimate: float, now: float) -> Charge | BudgetRefusal:
        keys, args = self._args(refs, estimate, now)
        try:
            ok, index, value = await self._charge(keys=keys, args=args)
        except self._errors as exc:
            self.on_error("admit")
            log.warning("shared budgets unavailable (%s): admitting, uncounted", type(exc).__name__)
            return Charge((), 0.0, None)
        if int(ok):
            return Charge(refs, estimate, max(0.0, float(value)))
        ref = refs[int(index) - 1]
        window = ref.budget.window_s
        resets = now + window / ROLLING_SLOTS if window is not None else period_bounds(ref.budget, now, self.zone)[1]
        return BudgetRefusal(ref, float(value), resets)

    async def settle(self, charge: Charge, cost: float, now: float) -> list[Crossing]:
        if not charge.refs:
            return []
        keys, args = self._args(charge.refs, charge.estimate, now)
        try:
            spent = [float(v) for v in await self._settle(keys=keys, args=[*args, repr(cost)])]
        except self._errors as exc:
            self.on_error("settle")
            log.warning("shared budgets unavailable at settle (%s): this cost is not counted", type(exc).__name__)
            return []
        crossings = []
        for i, ref in enumerate(charge.refs):
            before, after = spent[2 * i], spent[2 * i + 1]
            crossings += [Crossing(ref, share, after) for share in ref.budget.alert_at
                          if before < share * ref.budget.amount <= after]
        return crossings

    def used_ratios(self, now: float) -> dict[str, float]:
        return {}  # read from Redis by whoever alerts on it; a scrape does not wait on the network

    async def close(self) -> None:
        await self.client.aclose()
