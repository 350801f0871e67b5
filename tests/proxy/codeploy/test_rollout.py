"""Canary rollouts against scripted upstreams: the split, the smoke test, rollback, and weights by reload."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp

from proxy.codeploy.rollout import RolloutController
from proxy.control.reload import apply_live
from proxy.settings import build_settings
from proxy.upstream import UpstreamPool
from tests.proxy.conftest import ProxyFactory, RunningProxy, UpstreamFactory, proxy_config
from tests.support.fake_upstream import FakeUpstream

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello"}]}
FAST_HEALTH = {"interval_s": 0.2, "timeout_s": 0.5, "eject_base_s": 0.2, "eject_max_s": 1.0}


def with_canary(primary: str, canary: str, **settings: Any) -> dict[str, Any]:
    config = proxy_config([primary])
    config["upstreams"].append({"name": "main-v2", "backends": [{"url": canary}], "health": FAST_HEALTH,
                                "canary": {"of": "main", **settings}})
    return config


async def send(proxy: RunningProxy, count: int, concurrency: int = 25) -> Counter[str]:
    """Who served each request (X-Served-By), or the status when it failed."""
    served: Counter[str] = Counter()
    async with aiohttp.ClientSession() as http:
        async def one() -> None:
            async with http.post(proxy.url + "/v1/chat/completions", json=CHAT) as resp:
                await resp.read()
                served[resp.headers.get("X-Served-By", "?") if resp.status == 200 else str(resp.status)] += 1

        for start in range(0, count, concurrency):
            await asyncio.gather(*(one() for _ in range(min(concurrency, count - start))))
    return served


def chats(upstream: FakeUpstream) -> int:
    return sum(1 for r in upstream.requests if r["path"] == "/v1/chat/completions")


async def eventually(check: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_canary_weights_split_traffic(make_upstream: UpstreamFactory, make_proxy: ProxyFactory) -> None:
    old, new = await make_upstream("old"), await make_upstream("new")
    proxy = await make_proxy(with_canary(old.url, new.url, weight=10, rollback=None))
    served = await send(proxy, 400)
    share = served["new"] / 400
    print(f"\ncanary at 10%: {served['new']}/400 = {share:.1%} to the canary")
    # Binomial(400, 0.1) has sd 1.5 points: +-6 points is 4 sd.
    assert served["old"] + served["new"] == 400 and abs(share - 0.10) <= 0.06


async def test_failing_smoke_test_keeps_the_canary_out(make_upstream: UpstreamFactory,
                                                       make_proxy: ProxyFactory) -> None:
    old, new = await make_upstream("old"), await make_upstream("new")
    new.script.content = "the launch code is TOPSECRET-42"  # the new version leaks what the detectors block
    config = with_canary(old.url, new.url, weight=50, smoke={"prompts": ["hello", "how are you"]})
    config["detectors"] = [{"name": "canaries", "type": "patterns", "canaries": ["TOPSECRET-42"]}]
    config["policy"] = {"rules": [{"detector": "canaries", "action": "block"}]}
    proxy = await make_proxy(config)
    rollouts = proxy.state.rollouts
    assert rollouts is not None
    rollout = rollouts.rollouts["main-v2"]
    await eventually(lambda: rollout.state == "smoke_failed")
    assert "blocked by response policy" in rollout.reason
    served = await send(proxy, 60)
    assert served == Counter(old=60) and chats(new) == 2  # the two smoke prompts, nothing else
    assert proxy.metric("warden_canary_weight", {"group": "main-v2", "primary": "main"}) == 0
    async with aiohttp.ClientSession() as http, http.get(proxy.url + "/readyz") as resp:
        body = await resp.json()
    assert resp.status == 200  # a canary is optional: the primary alone makes Warden ready
    assert body["canaries"]["main-v2"]["state"] == "smoke_failed"


async def test_passing_smoke_test_gives_the_canary_its_weight(make_upstream: UpstreamFactory,
                                                              make_proxy: ProxyFactory) -> None:
    old, new = await make_upstream("old"), await make_upstream("new")
    proxy = await make_proxy(with_canary(old.url, new.url, weight=50, smoke={"prompts": ["hi"], "expect": "hello"}))
    assert proxy.state.pool.groups[1].traffic_weight == 0  # nothing before the test passes
    rollouts = proxy.state.rollouts
    assert rollouts is not None
    await eventually(lambda: rollouts.rollouts["main-v2"].state == "live")
    served = await send(proxy, 100)
    assert served["new"] > 20 and served["old"] > 20


async def test_erroring_canary_is_rolled_back(make_upstream: UpstreamFactory, make_proxy: ProxyFactory) -> None:
    old, new = await make_upstream("old"), await make_upstream("new")
    new.script.status = 500
    proxy = await make_proxy(with_canary(old.url, new.url, weight=50,
                                         rollback={"min_requests": 5, "error_margin": 0.1}))
    rollouts = proxy.state.rollouts
    assert rollouts is not None
    rollout = rollouts.rollouts["main-v2"]
    served: Counter[str] = Counter()
    deadline = time.monotonic() + 10
    # Three 500s in a row also eject the canary for a while (its share goes to the primary meanwhile),
    # so its five answers take as long as its ejections do.
    while rollout.state != "rolled_back":
        assert time.monotonic() < deadline, served
        served += await send(proxy, 20, concurrency=5)
    assert "error rate 100.0%" in rollout.reason
    print(f"\nrollback: {served['500']} requests answered by the failing canary before it was cut")
    assert 5 <= served["500"] <= 10 and served["old"] == served.total() - served["500"]
    assert await send(proxy, 100) == Counter(old=100)
    assert proxy.metric("warden_canary_rollbacks_total") == 1


async def test_weights_reload_live_for_a_blue_green_switch(make_upstream: UpstreamFactory,
                                                           make_proxy: ProxyFactory) -> None:
    blue, green = await make_upstream("blue"), await make_upstream("green")
    config = with_canary(blue.url, green.url, weight=0, rollback=None)
    proxy = await make_proxy(config)
    assert await send(proxy, 20) == Counter(blue=20)
    config["upstreams"][1]["canary"]["weight"] = 100
    result = apply_live(proxy.state, build_settings(config))
    assert result.applied == ["upstreams (canary weights)"] and "upstreams" not in result.restart_needed
    assert await send(proxy, 20) == Counter(green=20)
    config["upstreams"][1]["backends"] = [{"url": blue.url}]  # anything but a weight still needs a restart
    result = apply_live(proxy.state, build_settings(config))
    assert "upstreams" in result.restart_needed
    assert await send(proxy, 20) == Counter(green=20)


async def test_rollback_is_audited() -> None:
    rows: list[tuple[str, dict[str, Any]]] = []
    settings = build_settings(with_canary("http://a:1", "http://b:1", weight=30,
                                          rollback={"min_requests": 2, "block_margin": 0.2}))
    pool = UpstreamPool.from_settings(settings.upstreams)
    controller = RolloutController(pool, lambda table, row: rows.append((table, row)), clock=lambda: 0.0)

    class Ex:
        def __init__(self, backend: str, blocked: bool) -> None:
            self.backend, self.status = backend, 200
            self.verdict = type("V", (), {"action": "block" if blocked else "allow"})()

    for backend, blocked in [("http://a:1", False)] * 5 + [("http://b:1", True)] * 2:
        controller.record(Ex(backend, blocked))  # type: ignore[arg-type]
    assert pool.groups[1].traffic_weight == 0
    [(table, row)] = rows
    assert table == "audit_actions" and row["action"] == "canary_rollback" and row["target"] == "main-v2"
    assert "block rate 100.0%" in row["details"]["reason"]
