"""Fixtures: a Warden with review on (fake upstream behind it) and logged-in reviewer clients."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.app.review import REVIEW
from proxy.review.auth import hash_password, token_sha256
from proxy.review.service import ReviewService
from tests.proxy.conftest import ProxyFactory, RunningProxy, UpstreamFactory, proxy_config

PASSWORDS = {"alice": "alice-pw-1", "bob": "bob-pw-2"}
# These tests log in often; scrypt at its real cost (n=2^17, ~0.4 s) is exercised in tests/security.
TEST_SCRYPT_N = 2**14
TOKEN = "carol-token-0123456789abcdef"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture(scope="session")
def reviewer_config() -> list[dict[str, Any]]:
    # Hashed once per session: scrypt is slow on purpose.
    return [
        {"name": "alice", "password_hash": hash_password(PASSWORDS["alice"], n=TEST_SCRYPT_N), "can_reveal": True},
        {"name": "bob", "password_hash": hash_password(PASSWORDS["bob"], n=TEST_SCRYPT_N)},
        {"name": "carol", "token_sha256": token_sha256(TOKEN)},
    ]


def review_config(upstream_url: str, db: Path, reviewers: list[dict[str, Any]], **review: Any) -> dict[str, Any]:
    config = proxy_config([upstream_url])
    config["review"] = {"enabled": True, "db_path": str(db), "reviewers": reviewers, "rate": 1.0,
                        "double_review_share": 0.0, "counts_flush_s": 0.05, **review}
    return config


def service_of(proxy: RunningProxy) -> ReviewService:
    service = proxy.runner.app[REVIEW].service
    assert service is not None
    return service


class Client:
    """One reviewer's browser-less session: its own cookie jar, CSRF token read from each page."""

    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base, self.http, self.csrf = base, session, ""

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        async with self.http.get(self.base + path, **kw) as resp:
            text = await resp.text()
            if found := CSRF.search(text):
                self.csrf = found.group(1)
            return resp.status, text

    async def post(self, path: str, data: dict[str, Any] | list[tuple[str, str]], csrf: bool = True,
                   **kw: Any) -> tuple[int, str, str]:
        form = list(data.items()) if isinstance(data, dict) else list(data)
        if csrf:
            form.append(("csrf", self.csrf))
        async with self.http.post(self.base + path, data=form, allow_redirects=False, **kw) as resp:
            return resp.status, resp.headers.get("Location", ""), await resp.text()

    async def login(self, name: str, password: str) -> int:
        await self.get("/review/login")
        status, location, _ = await self.post("/review/login", {"name": name, "password": password})
        if status == 303:
            await self.get(location)
        return status


ClientFactory = Callable[[str, str], Awaitable[Client]]


@pytest.fixture
async def review_proxy(make_upstream: UpstreamFactory, make_proxy: ProxyFactory, tmp_path: Path,
                       reviewer_config: list[dict[str, Any]]) -> RunningProxy:
    upstream = await make_upstream()
    proxy = await make_proxy(review_config(upstream.url, tmp_path / "review.sqlite3", reviewer_config))
    proxy.runner.app[REVIEW].hasher.n = TEST_SCRYPT_N  # the cost the hashes above were made at: no rehash
    return proxy


@pytest.fixture
async def make_client(review_proxy: RunningProxy) -> AsyncIterator[ClientFactory]:
    async with AsyncExitStack() as stack:

        async def make(name: str, password: str) -> Client:
            session = await stack.enter_async_context(aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)))
            client = Client(review_proxy.url, session)
            assert await client.login(name, password) == 303
            return client

        yield make
