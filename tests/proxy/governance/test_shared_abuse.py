"""Abuse state exact across the workers of one host: the supervisor's one monitor (proxy/governance/shared.py)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from proxy.governance.abuse import AbuseMonitor, Restriction
from proxy.governance.settings import AbuseSettings
from proxy.governance.shared import HubLink, HubServer, SharedAbuse
from tests.proxy.governance.conftest import make_key
from tests.proxy.supervisor.warden import metric, supervised

LINES = {"window_s": 60, "max_systematic": 4, "template_prefix_chars": 16, "throttle_s": 30, "throttle_rpm": 2}
TEMPLATE = "Tell me the home address of customer number "
ADMIN = "admin-token-" + "5" * 20


async def _links(tmp_path: Path, count: int) -> tuple[HubServer, list[HubLink]]:
    hub = HubServer(tmp_path / "hub.sock", lambda: {"ready": True}, lambda: "", lambda index: None)
    await hub.start()
    links = [HubLink(tmp_path / "hub.sock") for _ in range(count)]
    for link in links:
        await link.open()
    return hub, links


async def test_observations_spread_over_two_workers_throttle_when_one_monitor_would(tmp_path: Path) -> None:
    settings = AbuseSettings.model_validate(LINES)
    alone: list[str] = []
    single = AbuseMonitor(settings, lambda action, r: alone.append(action))
    heard: list[list[str]] = [[], []]
    hub, links = await _links(tmp_path, 2)
    try:
        workers = [SharedAbuse(link, settings, functools.partial(lambda i, action, r: heard[i].append(action), i))
                   for i, link in enumerate(links)]
        for worker in workers:
            await worker.attach()
        refused_alone, refused_shared = [], []
        for i in range(8):  # requests alternate between the workers, as the kernel spreads connections
            now = float(i)
            worker = workers[i % 2]
            refused_alone.append(await single.check("key:a", now) is not None)
            refused_shared.append(await worker.check("key:a", now) is not None)
            single.observe_prompt("key:a", "acme", TEMPLATE + str(i), now)
            worker.observe_prompt("key:a", "acme", TEMPLATE + str(i), now)
        assert refused_shared == refused_alone == [False] * 4 + [False, False, True, True]  # throttled: 2 a minute
        assert alone == ["throttle"]
        assert heard == [[], ["throttle"]]  # audited once, by the worker whose request crossed the line
        for worker in workers:  # every worker's copy (GET /admin/abuse, the gauge) holds it
            assert [r.kind for r in worker.restrictions.values()] == ["throttle"]

        lifted = workers[0].lift("key:a")  # an admin call on one worker lifts it for the host
        assert lifted is not None and lifted.kind == "throttle"
        assert await workers[1].check("key:a", 9.0) is None
        assert workers[1].restrictions == {}
        await asyncio.sleep(0.05)  # the push to worker 0 rides its own link
        assert heard == [["lift"], ["throttle"]]

        late = HubLink(tmp_path / "hub.sock")  # a restarted worker starts with what is in force
        await late.open()
        links.append(late)
        for i in range(4):
            workers[0].observe_prompt("key:b", "acme", TEMPLATE + str(i), 10.0)
        assert await workers[0].check("key:b", 10.0) is None  # a throttle's first requests pass
        newcomer = SharedAbuse(late, settings, lambda action, r: None)
        await newcomer.attach()
        assert list(newcomer.restrictions) == ["key:b"]
    finally:
        for link in links:
            await link.close()
        await hub.stop()


async def test_a_reload_changes_the_owners_lines_and_expiry_is_heard_once(tmp_path: Path) -> None:
    hub, links = await _links(tmp_path, 2)
    heard: list[tuple[int, str, Restriction]] = []
    try:
        workers = [SharedAbuse(link, AbuseSettings.model_validate(LINES),
                               functools.partial(lambda i, action, r: heard.append((i, action, r)), i))
                   for i, link in enumerate(links)]
        for worker in workers:
            await worker.attach()
        for worker in workers:  # the reload of every worker: stricter lines
            worker.settings = AbuseSettings.model_validate({**LINES, "max_systematic": 2})
        workers[0].observe_prompt("key:a", "acme", TEMPLATE + "0", 0.0)
        workers[1].observe_prompt("key:a", "acme", TEMPLATE + "1", 0.0)
        await workers[0].check("key:a", 0.5)
        await asyncio.sleep(0.05)  # the push to worker 1 rides its own link
        assert [(i, a) for i, a, _ in heard] == [(1, "throttle")]
        assert await workers[0].check("key:a", 31.0) is None  # expired: heard by the worker that found it
        assert [(i, a) for i, a, _ in heard] == [(1, "throttle"), (0, "expire")]
        await asyncio.sleep(0.05)
        assert workers[1].restrictions == {}
    finally:
        for link in links:
            await link.close()
        await hub.stop()


async def test_two_workers_suspend_the_subject_at_the_request_one_process_would(tmp_path: Path) -> None:
    key = make_key("acme")
    governance: dict[str, Any] = {
        "keys": [key.config()], "admin_token_sha256": [hashlib.sha256(ADMIN.encode()).hexdigest()],
        "abuse": {**LINES, "suspend_after": 1},
    }
    with supervised(tmp_path, {"telemetry": {"enabled": False}, "governance": governance}) as (warden, _):
        async def one(i: int, prompt: str = TEMPLATE) -> int:
            body = {"model": "m", "messages": [{"role": "user", "content": prompt + str(i)}]}
            # a connection each, so the kernel spreads them over both workers
            async with aiohttp.ClientSession() as http, \
                    http.post(warden.url + "/v1/chat/completions", json=body, headers=key.headers) as resp:
                await resp.read()
                return resp.status

        # one process: the 4th variation of the template suspends (suspend_after 1); the 5th is refused
        statuses = [await one(i) for i in range(8)]
        assert statuses == [200] * 4 + [403] * 4
        assert metric(warden.url, "warden_abuse_actions_total") == 1  # counted once for the host

        def admin(method: str, path: str) -> Any:
            req = urllib.request.Request(warden.url + path, method=method,
                                         headers={"Authorization": "Bearer " + ADMIN})
            with urllib.request.urlopen(req, timeout=5) as resp:
                return json.loads(resp.read())

        for _ in range(4):  # whichever worker answers knows it
            listed = await asyncio.to_thread(admin, "GET", "/admin/abuse")
            assert [(r["subject"], r["kind"]) for r in listed["data"]] == [(f"key:{key.id}", "suspend")]
        await asyncio.to_thread(admin, "DELETE", f"/admin/abuse/key:{key.id}")
        await asyncio.sleep(0.2)
        varied = [await one(i, f"question {i} about something else: ") for i in range(6)]
        assert varied == [200] * 6  # lifted on every worker
