"""Slots, the bounded wait queue, and the errors clients get when capacity runs out."""

from __future__ import annotations

import asyncio

import pytest

from proxy.errors import Overloaded, Unavailable
from proxy.upstream import Group
from proxy.upstream.settings import GroupSettings


def group(cap: int = 1, max_waiting: int = 2, timeout_s: float = 1.0, n: int = 1) -> Group:
    return Group(GroupSettings(
        name="g", backends=[{"url": f"http://127.0.0.1:{9000 + i}"} for i in range(n)],
        max_concurrency=cap, queue={"max_waiting": max_waiting, "timeout_s": timeout_s},
    ))


async def test_waiters_are_served_in_order_when_slots_free_up() -> None:
    g = group(cap=1, max_waiting=5)
    first = await g.acquire(None)
    order: list[int] = []

    async def wait(i: int) -> None:
        backend = await g.acquire(None)
        order.append(i)
        await asyncio.sleep(0)
        g.release(backend)

    tasks = [asyncio.create_task(wait(i)) for i in range(3)]
    await asyncio.sleep(0.01)
    assert g.queue_depth == 3
    g.release(first)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    assert g.backends[0].outstanding == 0 and g.queue_depth == 0


async def test_full_queue_answers_429_at_once_with_retry_after() -> None:
    g = group(cap=1, max_waiting=1)
    await g.acquire(None)
    waiter = asyncio.create_task(g.acquire(None))
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded) as info:
        await g.acquire(None)
    assert info.value.status == 429 and info.value.headers["Retry-After"] == "1"
    waiter.cancel()


async def test_expired_wait_answers_503_with_retry_after_and_leaves_no_waiter() -> None:
    g = group(cap=1, max_waiting=4, timeout_s=0.05)
    await g.acquire(None)
    with pytest.raises(Unavailable) as info:
        await g.acquire(None)
    assert info.value.status == 503 and int(info.value.headers["Retry-After"]) >= 1
    assert g.queue_depth == 0


async def test_cancelled_waiter_does_not_swallow_a_wake_up() -> None:
    g = group(cap=1, max_waiting=4)
    holder = await g.acquire(None)
    doomed = asyncio.create_task(g.acquire(None))
    patient = asyncio.create_task(g.acquire(None))
    await asyncio.sleep(0.01)
    g.release(holder)  # wakes `doomed` first...
    doomed.cancel()  # ...which is cancelled before it runs: the slot must pass on
    backend = await asyncio.wait_for(patient, 1)
    assert backend.outstanding == 1 and g.queue_depth == 0


async def test_no_available_backend_answers_503_with_the_time_to_its_return() -> None:
    g = group(n=2)
    for b in g.backends:
        b.eject(g.clock(), "test")
    with pytest.raises(Unavailable) as info:
        await g.acquire(None)
    assert info.value.headers["Retry-After"] == "1"


async def test_excluded_backends_are_not_picked() -> None:
    g = group(cap=5, n=2)
    first = await g.acquire(None)
    second = await g.acquire(None, exclude=[first])
    assert second is not first
    with pytest.raises(Unavailable):
        await g.acquire(None, exclude=g.backends)


def test_model_patterns() -> None:
    g = Group(GroupSettings(name="g", models=["llama-*", "exact"], backends=[{"url": "http://h:1/v1/"}]))
    assert g.matches("llama-3") and g.matches("exact") and not g.matches("exactly")
    assert g.literal_models == ["exact"]
    assert g.backends[0].url == "http://h:1"
    # fnmatch's rules, case-sensitive: `?` one character, `[..]` a class; `*` alone takes every name.
    g = Group(GroupSettings(name="g", models=["mistral-?b", "[qQ]wen*"], backends=[{"url": "http://h:1"}]))
    assert g.matches("mistral-7b") and not g.matches("mistral-70b") and not g.matches("Mistral-7b")
    assert g.matches("qwen2") and g.matches("Qwen") and not g.matches("xqwen")
    anything = Group(GroupSettings(name="any", models=["*"], backends=[{"url": "http://h:1"}]))
    assert anything.matches("") and anything.matches("whatever/model:tag")
