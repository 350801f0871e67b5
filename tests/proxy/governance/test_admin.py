"""The admin API and `warden keys`: changes take effect at once, bad reloads change nothing, all is audited."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from proxy.cli import main as warden
from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config
from tests.proxy.governance.conftest import governed_config, make_key
from tests.support.llama import free_port

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
ADMIN = "admin-token-" + "9" * 20
ADMIN_HEADERS = {"Authorization": "Bearer " + ADMIN}


def admin_config(up_url: str, keys_file: Path, **extra: Any) -> dict[str, Any]:
    return governed_config([up_url], [], keys_file=str(keys_file),
                           admin_token_sha256=[hashlib.sha256(ADMIN.encode()).hexdigest()], **extra)


async def chat(http: aiohttp.ClientSession, url: str, key: str) -> int:
    async with http.post(url + "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer " + key}) as r:
        await r.read()
        return r.status


async def test_keys_created_rotated_and_revoked_over_the_api_work_at_once(
        make_upstream: UpstreamFactory, make_proxy: ProxyFactory, http: aiohttp.ClientSession,
        tmp_path: Path) -> None:
    up = await make_upstream()
    proxy = await make_proxy(admin_config(up.url, tmp_path / "keys.json"))
    async with http.post(proxy.url + "/admin/keys", json={"tenant": "acme"}) as resp:
        assert resp.status == 401  # no admin token
    async with http.post(proxy.url + "/admin/keys", json={"tenant": "acme", "name": "ci"},
                         headers=ADMIN_HEADERS) as resp:
        assert resp.status == 201
        created = await resp.json()
    key = created["key"]
    assert await chat(http, proxy.url, key) == 200
    async with http.post(proxy.url + f"/admin/keys/{created['id']}/rotate", headers=ADMIN_HEADERS) as resp:
        rotated = (await resp.json())["key"]
    assert await chat(http, proxy.url, key) == 401
    assert await chat(http, proxy.url, rotated) == 200
    async with http.delete(proxy.url + f"/admin/keys/{created['id']}", headers=ADMIN_HEADERS) as resp:
        assert resp.status == 200
    assert await chat(http, proxy.url, rotated) == 401  # the very next request
    async with http.get(proxy.url + "/admin/keys", headers=ADMIN_HEADERS) as resp:
        listed = (await resp.json())["data"]
    assert listed[0]["id"] == created["id"] and listed[0]["revoked_at"] and "sha256" not in listed[0]
    async with http.delete(proxy.url + "/admin/keys/nope", headers=ADMIN_HEADERS) as resp:
        assert resp.status == 404
    async with http.post(proxy.url + "/admin/keys", json={"tenant": "no spaces"}, headers=ADMIN_HEADERS) as resp:
        assert resp.status == 400


async def test_the_cli_changes_a_running_proxys_keys_within_a_second(
        make_upstream: UpstreamFactory, make_proxy: ProxyFactory, http: aiohttp.ClientSession,
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up = await make_upstream()
    keys = tmp_path / "keys.json"
    proxy = await make_proxy(admin_config(up.url, keys))
    assert await asyncio.to_thread(warden, ["keys", "create", "--tenant", "acme", "--file", str(keys)]) == 0
    created = json.loads(capsys.readouterr().out)
    deadline = time.monotonic() + 3
    while await chat(http, proxy.url, created["key"]) != 200:
        assert time.monotonic() < deadline, "the new key never took effect"
        await asyncio.sleep(0.1)
    assert await asyncio.to_thread(warden, ["keys", "revoke", created["id"], "--file", str(keys)]) == 0
    started = time.monotonic()
    while await chat(http, proxy.url, created["key"]) != 401:
        assert time.monotonic() - started < 2.5, "the revoked key kept working"
        await asyncio.sleep(0.05)
    assert await asyncio.to_thread(warden, ["keys", "revoke", created["id"], "--file", str(keys)]) == 1
    assert await asyncio.to_thread(warden, ["keys", "list", "--file", str(keys)]) == 0
    listed = capsys.readouterr().out
    assert created["id"] in listed and created["key"] not in listed


def test_keys_hash_prints_the_sha256_of_stdin(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("wk-abc-secret\n"))
    assert warden(["keys", "hash"]) == 0
    assert capsys.readouterr().out.strip() == hashlib.sha256(b"wk-abc-secret").hexdigest()


async def test_a_broken_reload_keeps_the_running_config_and_a_good_one_applies(
        make_upstream: UpstreamFactory, http: aiohttp.ClientSession, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from proxy.server import start_runner
    from proxy.settings import load_settings

    up = await make_upstream()
    old, new = make_key("acme"), make_key("acme")
    config = governed_config([up.url], [old], admin_token_sha256=[hashlib.sha256(ADMIN.encode()).hexdigest()])
    path = tmp_path / "warden.yaml"
    path.write_text(yaml.safe_dump(config))
    runner, url = await start_runner(load_settings(path), CollectorRegistry(), config_path=path)
    try:
        broken = {**config, "governance": {**config["governance"], "tenants": {"acme": {"requests_per_minute": 0}}},
                  "timeouts": {"read_s": -1}}
        path.write_text(yaml.safe_dump(broken))
        async with http.post(url + "/admin/reload", headers=ADMIN_HEADERS) as resp:
            body = await resp.json()
        assert resp.status == 400 and not body["ok"]
        assert any(e.startswith("timeouts.read_s") for e in body["errors"])
        assert any("requests_per_minute" in e for e in body["errors"])
        assert await chat(http, url, old.secret) == 200  # still the old config
        fixed = {**config, "governance": {**config["governance"], "keys": [new.config()]},
                 "timeouts": {"read_s": 60}}
        path.write_text(yaml.safe_dump(fixed))
        async with http.post(url + "/admin/reload", headers=ADMIN_HEADERS) as resp:
            body = await resp.json()
        assert resp.status == 200 and body["applied"] == ["governance"] and body["restart_needed"] == ["timeouts"]
        assert await chat(http, url, old.secret) == 401
        assert await chat(http, url, new.secret) == 200
    finally:
        await runner.cleanup()


def test_sighup_reloads_a_running_warden(tmp_path: Path) -> None:
    """The real command, the real signal: a key added to the file works after SIGHUP, not before."""
    from tests.support.fake_upstream import FakeUpstream

    async def scenario() -> None:
        up = await FakeUpstream().start()
        first, second = make_key("acme"), make_key("acme")
        port = free_port()
        config = proxy_config([up.url])
        config["listen"]["port"] = port
        config["governance"] = {"keys": [first.config()]}
        path = tmp_path / "warden.yaml"
        path.write_text(yaml.safe_dump(config))
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "proxy.cli", "serve", "--config", str(path),
                                                    stderr=asyncio.subprocess.PIPE,
                                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(100):
                    try:
                        if await chat(http, base, first.secret) == 200:
                            break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)
                assert await chat(http, base, second.secret) == 401
                config["governance"]["keys"].append(second.config())
                path.write_text(yaml.safe_dump(config))
                proc.send_signal(signal.SIGHUP)
                for _ in range(50):
                    if await chat(http, base, second.secret) == 200:
                        break
                    await asyncio.sleep(0.1)
                assert await chat(http, base, second.secret) == 200
        finally:
            proc.terminate()
            _, raw = await asyncio.wait_for(proc.communicate(), 20)
            err = raw.decode()
            await up.stop()
        assert "config reloaded: applied ['governance']" in err
        assert first.secret not in err and second.secret not in err

    asyncio.run(scenario())
