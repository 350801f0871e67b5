"""Token buckets and admission: exact in one process, refused requests cost nothing."""

from __future__ import annotations

from proxy.governance.limits import Grant, Limits, MemoryLimiter, Refusal, TokenBucket, duration


def test_bucket_bursts_one_minute_then_refills_evenly() -> None:
    bucket = TokenBucket(60.0)
    assert bucket.available(0.0) == 60
    bucket.take(60, 0.0)
    assert bucket.wait_s(1, 0.0) == 1.0
    assert bucket.available(0.5) == 0.5
    assert bucket.available(1000.0) == 60  # never above the burst
    assert bucket.reset_s(1000.0) == 0


def test_reset_durations_read_like_openai() -> None:
    assert [duration(s) for s in (0, 0.2, 1, 59.5, 60, 360, 3723)] == ["0s", "1s", "1s", "1m0s", "1m0s",
                                                                         "6m0s", "1h2m3s"]


async def test_admission_checks_all_limits_before_taking_any() -> None:
    limiter = MemoryLimiter()
    limits = Limits(10, 100, None, 60.0)
    assert isinstance(await limiter.admit("acme", limits, 90, "r1", 0.0), Grant)
    refusal = await limiter.admit("acme", limits, 20, "r2", 0.0)
    assert isinstance(refusal, Refusal) and refusal.code == "tokens_rate_limit_exceeded"
    assert refusal.retry_after_s > 0
    usage = limiter.usage("acme", 10, 100)
    assert usage.requests is not None and usage.requests.available(0.0) == 9  # the refused one took nothing
    headers = refusal.headers
    assert headers["x-ratelimit-limit-requests"] == "10" and headers["x-ratelimit-remaining-requests"] == "9"
    assert headers["x-ratelimit-remaining-tokens"] == "10" and headers["x-ratelimit-reset-tokens"] == "54s"


async def test_concurrency_cap_and_settling_usage() -> None:
    limiter = MemoryLimiter()
    limits = Limits(None, 1000, 2, 60.0)
    first = await limiter.admit("acme", limits, 10, "r1", 0.0)
    assert isinstance(first, Grant)
    assert isinstance(await limiter.admit("acme", limits, 10, "r2", 0.0), Grant)
    refusal = await limiter.admit("acme", limits, 10, "r3", 0.0)
    assert isinstance(refusal, Refusal) and refusal.code == "concurrency_limit_exceeded"
    await limiter.settle(first, 1000, charged=10, used=500, now=0.0)  # usage reported after the fact is owed
    usage = limiter.usage("acme", None, 1000)
    assert usage.in_flight == 1
    assert usage.tokens is not None and usage.tokens.available(0.0) == 1000 - 20 - 490


def test_a_changed_limit_takes_effect_on_the_next_call() -> None:
    limiter = MemoryLimiter()
    assert limiter.usage("acme", 5, None).requests is not None
    usage = limiter.usage("acme", 50, None)
    assert usage.requests is not None and usage.requests.per_minute == 50
    assert limiter.usage("acme", None, None).requests is None


def test_debt_is_kept_not_forgiven() -> None:
    bucket = TokenBucket(60.0)
    bucket.take(70, 0.0)  # usage reported after admission overshot the budget
    assert bucket.available(0.0) == -10
    assert bucket.wait_s(1, 0.0) == 11.0
