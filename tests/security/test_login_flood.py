"""Class 1: a flood of wrong review logins neither stalls the proxy nor goes on unthrottled.

Scrypt runs at its real default cost here on purpose (the reviewers' hashes are made with the
default), so a hash left on the event loop would show as /healthz latency.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.review import auth
from proxy.review.auth import check_login, hash_password, token_sha256
from proxy.review.settings import ReviewerSettings
from tests.proxy.conftest import ProxyFactory, RunningProxy, UpstreamFactory
from tests.proxy.review.conftest import Client, review_config, service_of

PASSWORD = "correct horse battery staple"
TOKEN = "dave-token-0123456789abcdef"
FLOODERS, TRIES = 24, 4


@pytest.fixture(scope="module")
def reviewers() -> list[dict[str, Any]]:
    return [{"name": "alice", "password_hash": hash_password(PASSWORD)},
            {"name": "dave", "token_sha256": token_sha256(TOKEN)}]


@pytest.fixture
async def proxy(make_upstream: UpstreamFactory, make_proxy: ProxyFactory, tmp_path: Path,
                reviewers: list[dict[str, Any]]) -> RunningProxy:
    upstream = await make_upstream()
    return await make_proxy(review_config(upstream.url, tmp_path / "review.sqlite3", reviewers))


async def test_a_login_flood_leaves_healthz_fast_and_is_answered_429(proxy: RunningProxy) -> None:
    answers: list[tuple[int, str | None]] = []
    done = asyncio.Event()

    async def flooder(i: int) -> None:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            client = Client(proxy.url, http)
            await client.get("/review/login")
            for _ in range(TRIES):
                name = "alice" if i % 2 else f"mallory{i}"
                form = {"name": name, "password": f"guess{i}", "csrf": client.csrf}
                async with http.post(proxy.url + "/review/login", data=form, allow_redirects=False) as resp:
                    answers.append((resp.status, resp.headers.get("Retry-After")))

    async def probe() -> list[float]:
        latencies = []
        async with aiohttp.ClientSession() as http:
            while not done.is_set():
                start = time.perf_counter()
                async with http.get(proxy.url + "/healthz") as resp:
                    await resp.read()
                latencies.append(time.perf_counter() - start)
                await asyncio.sleep(0.01)
        return latencies

    prober = asyncio.create_task(probe())
    await asyncio.gather(*(flooder(i) for i in range(FLOODERS)))
    done.set()
    latencies = await prober
    p90 = statistics.quantiles(latencies, n=10)[-1] if len(latencies) >= 2 else latencies[0]
    assert p90 < 0.3, f"/healthz p90 {p90:.3f}s during the login flood ({len(latencies)} probes)"
    assert {status for status, _ in answers} <= {401, 429}
    throttled = [after for status, after in answers if status == 429]
    assert len(throttled) >= FLOODERS * TRIES // 2, answers
    assert all(after is not None and after.isdigit() and int(after) >= 1 for after in throttled)


async def test_logout_ends_the_session_on_the_server(proxy: RunningProxy) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        client = Client(proxy.url, http)
        assert await client.login("alice", PASSWORD) == 303
        cookie = next(c.value for c in http.cookie_jar if c.key == "warden_review")
        assert (await client.post("/review/logout", {}))[0] == 303
    async with aiohttp.ClientSession() as replay, replay.get(
            proxy.url + "/review/queue", headers={"Cookie": f"warden_review={cookie}"}, allow_redirects=False) as resp:
        assert (resp.status, resp.headers.get("Location")) == (303, "/review/login")


async def test_an_old_hash_is_upgraded_on_login(make_upstream: UpstreamFactory, make_proxy: ProxyFactory,
                                                tmp_path: Path) -> None:
    old = hash_password(PASSWORD, n=2**14)
    upstream = await make_upstream()
    proxy = await make_proxy(review_config(upstream.url, tmp_path / "review.sqlite3",
                                           [{"name": "alice", "password_hash": old}]))
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert await Client(proxy.url, http).login("alice", PASSWORD) == 303
    upgraded = await service_of(proxy).store.credential("alice", old)
    assert upgraded is not None and upgraded.startswith(f"scrypt${auth.SCRYPT_N}$8$1$")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        assert await Client(proxy.url, http).login("alice", PASSWORD) == 303  # the upgraded hash checks it
        assert await Client(proxy.url, http).login("alice", "wrong") == 401


def test_unknown_names_and_token_reviewers_cost_one_full_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    assert auth.SCRYPT_N >= 2**17  # OWASP's floor for scrypt (r=8, p=1)
    reviewers = [ReviewerSettings(name="a", password_hash=hash_password("pw", n=2**10)),
                 ReviewerSettings(name="t", token_sha256=token_sha256(TOKEN))]
    costs: list[int] = []
    real = hashlib.scrypt

    def counting(password: bytes, *, salt: bytes, n: int, r: int, p: int, dklen: int = 64, maxmem: int = 0) -> bytes:
        costs.append(n)
        return real(password, salt=salt, n=2**10, r=r, p=p, dklen=dklen)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    for name, secret in [("nobody", "x"), ("t", "wrong"), ("t", TOKEN), ("a", "wrong")]:
        costs.clear()
        check_login(reviewers, name, secret)
        assert len(costs) == 1, (name, secret, costs)
        assert name == "a" or costs == [auth.SCRYPT_N], (name, costs)


def test_throttle_memory_is_bounded_against_spoofed_names() -> None:
    throttle = auth.LoginThrottle(max_entries=64)
    for i in range(5000):
        throttle.admit(f"10.0.{i // 250}.{i % 250}", f"spoof{i}", known=False)
    assert throttle.size() <= 2 * 64
    for _ in range(throttle.free):
        assert throttle.admit("10.9.9.9", "alice", known=True) == 0
    assert throttle.admit("10.9.9.8", "alice", known=True) > 0  # the name is throttled from any address


async def test_hashes_run_on_a_bounded_pool_off_the_loop() -> None:
    hasher = auth.PasswordHasher(n=2**15, workers=2, max_waiting=6)
    reviewers = [ReviewerSettings(name="a", password_hash=hash_password("pw", n=2**15))]
    lags: list[float] = []

    async def ticker() -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.005)
            lags.append(time.perf_counter() - start - 0.005)

    tick = asyncio.create_task(ticker())
    try:
        logins = [asyncio.ensure_future(hasher.authenticate(reviewers, "a", "wrong", {})) for _ in range(6)]
        await asyncio.sleep(0)
        assert hasher.busy
        with pytest.raises(auth.HasherBusy):  # a seventh waits for nothing: it is refused at once
            await hasher.authenticate(reviewers, "a", "pw", {})
        assert [r.reviewer for r in await asyncio.gather(*logins)] == [None] * 6
    finally:
        tick.cancel()
        await hasher.close()
    assert max(lags) < 0.1, f"the event loop stalled {max(lags):.3f}s while hashing"
