"""End to end: chats through the proxy land in the queue with their stratum, findings and lineage."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp

from tests.proxy.conftest import ProxyFactory, RunningProxy, UpstreamFactory
from tests.proxy.review.conftest import PASSWORDS, Client, review_config, service_of

CANARY = "zebra-canary-7731"


async def chat(http: aiohttp.ClientSession, proxy: RunningProxy, stream: bool, **extra: Any) -> str:
    payload = {"model": "m", "messages": [{"role": "user", "content": "say something"}], "stream": stream, **extra}
    async with http.post(proxy.url + "/v1/chat/completions", json=payload) as resp:
        assert resp.status == 200
        return await resp.text()


async def wait_for(predicate: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_traffic_lands_in_the_queue(make_upstream: UpstreamFactory, make_proxy: ProxyFactory, tmp_path: Path,
                                          reviewer_config: list[dict[str, Any]]) -> None:
    upstream = await make_upstream()
    config = review_config(upstream.url, tmp_path / "r.sqlite3", reviewer_config, raw_text=True,
                           rates=[{"tenants": ["*"], "models": ["m"], "rate": 1.0}])
    config["detectors"] = [{"name": "secrets", "type": "patterns", "canaries": [CANARY]}]
    config["policy"] = {"stream_window_chars": 32, "rules": [{"detector": "secrets", "action": "redact"}]}
    proxy = await make_proxy(config)
    service = service_of(proxy)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        upstream.script.content = "a plain answer"
        await chat(http, proxy, stream=False, metadata={"prompt_template_id": "greet", "prompt_template_version": "3"})
        upstream.script.pieces = ["the marker is ", CANARY[:6], CANARY[6:], " ok"]
        text = await chat(http, proxy, stream=True)
        assert CANARY not in text  # the client got it redacted

        async def both_kept() -> bool:
            return len(await service.store.export()) == 2

        await wait_for(both_kept)
        rows = {r["stratum"]: r for r in await service.store.export()}
        assert set(rows) == {"uniform", "flagged"}
        plain, flagged = rows["uniform"], rows["flagged"]
        assert plain["output"] == "a plain answer" and plain["prompt"] == "user: say something"
        assert (plain["template_id"], plain["template_version"], plain["probability"]) == ("greet", "3", 1.0)
        assert flagged["verdict"] == "redact" and CANARY not in flagged["output"]
        assert "the marker is" in flagged["output"]
        assert flagged["findings"][0]["detector"] == "secrets" and flagged["findings"][0]["direction"] == "response"
        assert await service.store.raw_output(flagged["id"]) == f"the marker is {CANARY} ok"

        async def counted() -> bool:
            return (await service.store.estimate_inputs()).traffic == {"m": 2}

        await wait_for(counted)
        # The reviewer sees it; revealing the raw text is allowed for alice, and audited.
        audits: list[dict[str, Any]] = []
        service.emit = lambda table, row: audits.append(row) if table == "audit_actions" else None
        alice = Client(proxy.url, http)
        assert await alice.login("alice", PASSWORDS["alice"]) == 303
        status, body = await alice.get(f"/review/items/{flagged['id']}")
        assert status == 200 and CANARY not in body and "reveal-button" in body
        status, _, body = await alice.post(f"/review/items/{flagged['id']}/reveal", {})
        assert status == 200 and CANARY in body
        assert audits == [{"actor": "alice", "action": "review.reveal_raw", "target": flagged["id"],
                           "tenant": "anonymous", "request_id": flagged["request_id"], "outcome": "shown",
                           "details": {"model": "m"}}]
        status, body = await alice.get("/review/estimates")
        assert status == 200 and 'data-model="m"' in body


async def test_blocked_requests_are_sampled_with_their_findings_cut_out(
        make_upstream: UpstreamFactory, make_proxy: ProxyFactory, tmp_path: Path,
        reviewer_config: list[dict[str, Any]]) -> None:
    upstream = await make_upstream()
    config = review_config(upstream.url, tmp_path / "r.sqlite3", reviewer_config,
                           rates=[{"tenants": ["*"], "models": ["m"], "rate": 0.0}])
    config["detectors"] = [{"name": "secrets", "type": "patterns", "canaries": [CANARY]}]
    config["policy"] = {"rules": [{"detector": "secrets", "action": "block"}]}
    proxy = await make_proxy(config)
    service = service_of(proxy)
    payload = {"model": "m", "messages": [{"role": "user", "content": f"leak {CANARY} please"}]}
    async with aiohttp.ClientSession() as http, http.post(proxy.url + "/v1/chat/completions", json=payload) as resp:
        assert resp.status == 400
    assert upstream.requests == []

    async def kept() -> bool:
        return len(await service.store.export()) == 1

    await wait_for(kept)
    (row,) = await service.store.export()
    assert row["stratum"] == "blocked" and row["verdict"] == "block" and row["probability"] == 1.0
    assert CANARY not in row["prompt"] and "leak" in row["prompt"] and row["output"] == ""
    assert row["findings"][0]["direction"] == "request"


async def test_a_finding_just_under_its_threshold_is_sampled_as_near(
        make_upstream: UpstreamFactory, make_proxy: ProxyFactory, tmp_path: Path,
        reviewer_config: list[dict[str, Any]]) -> None:
    upstream = await make_upstream()
    upstream.script.content = f"here is {CANARY}"
    config = review_config(upstream.url, tmp_path / "r.sqlite3", reviewer_config,
                           rates=[{"tenants": ["*"], "models": ["m"], "rate": 0.0}])
    config["detectors"] = [{"name": "secrets", "type": "patterns", "canaries": [CANARY]}]
    # The rule blocks secrets for another tenant only: this one's finding is allowed, yet sits at the
    # rule's threshold (near ignores who asked), so it is reviewed as a near miss.
    config["policy"] = {"rules": [{"detector": "secrets", "action": "block", "threshold": 0.95,
                                   "tenants": ["someone-else"]}]}
    proxy = await make_proxy(config)
    service = service_of(proxy)
    async with aiohttp.ClientSession() as http:
        payload = {"model": "m", "messages": [{"role": "user", "content": "say something"}]}
        lineage = {"X-Prompt-Template-Id": "support-bot", "X-Prompt-Template-Version": "12"}
        async with http.post(proxy.url + "/v1/chat/completions", json=payload, headers=lineage) as resp:
            assert CANARY in await resp.text()  # allowed for this tenant
        upstream.script.content = "nothing to see"
        await chat(http, proxy, stream=False)  # no finding: uniform stratum, rate 0

    async def kept() -> bool:
        return len(await service.store.export()) == 1

    await wait_for(kept)
    await asyncio.sleep(0.1)
    (row,) = await service.store.export()
    assert row["stratum"] == "near" and row["verdict"] == "allow"
    assert row["findings"][0]["action"] == "allow" and row["findings"][0]["detector"] == "secrets"
    assert (row["template_id"], row["template_version"]) == ("support-bot", "12")  # lineage from headers
