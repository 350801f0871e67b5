"""A Warden with review on, served from its own thread and loop, for the synchronous browser tests.

Playwright's sync API cannot run inside an asyncio loop, so the proxy (and its fake upstream)
live on a thread; tests reach them over HTTP like a browser would, or through `call`.
"""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.app.review import REVIEW
from proxy.review.service import ReviewService
from proxy.server import start_runner
from proxy.settings import build_settings
from tests.proxy.review.conftest import TEST_SCRYPT_N
from tests.support.fake_upstream import FakeUpstream

T = TypeVar("T")


class ServedProxy:
    def __init__(self, db: Path, reviewers: list[dict[str, Any]]) -> None:
        self.db, self.reviewers = db, reviewers
        self.url = ""
        self.upstream = FakeUpstream("browser")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="review-browser-proxy", daemon=True)

    def __enter__(self) -> ServedProxy:
        self._thread.start()
        assert self._ready.wait(30), "proxy thread did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            await self.upstream.start()
            config = {
                "listen": {"host": "127.0.0.1", "port": 0},
                "upstreams": [{"name": "main", "backends": [{"url": self.upstream.url}]}],
                "server": {"shutdown_grace_s": 2, "uvloop": False},
                "telemetry": {"enabled": False},
                "review": {"enabled": True, "db_path": str(self.db), "reviewers": self.reviewers, "rate": 1.0,
                           "double_review_share": 0.0, "counts_flush_s": 0.05},
            }
            self._runner, self.url = await start_runner(build_settings(config), CollectorRegistry())
            app = self._runner.app
            assert isinstance(app, web.Application)
            app[REVIEW].hasher.n = TEST_SCRYPT_N  # the reviewers' hashes are made at this cost
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise
        self._ready.set()
        await self._stop.wait()
        await self._runner.cleanup()
        await self.upstream.stop()

    @property
    def service(self) -> ReviewService:
        assert self._runner is not None
        app = self._runner.app
        assert isinstance(app, web.Application)
        service = app[REVIEW].service
        assert service is not None
        return service

    def call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run a coroutine on the proxy's loop and wait for its result."""
        assert self._loop is not None

        async def run() -> T:
            return await make()

        future: Future[T] = asyncio.run_coroutine_threadsafe(run(), self._loop)
        return future.result(10)

    def chat(self, model: str, content: str) -> None:
        """One real chat through the proxy (the fake upstream answers `content`)."""
        self.upstream.script.content = content
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hello"}]}).encode()
        request = urllib.request.Request(self.url + "/v1/chat/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
            resp.read()
