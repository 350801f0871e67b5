"""End to end: the real `openai` client, through Warden, to real llama.cpp servers.

`max_retries=0` on the client: any failure the proxy lets through must show up here, not be
papered over by the client's own retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import APIError, AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from tests.proxy.conftest import ProxyFactory, RunningProxy, proxy_config
from tests.support.llama import LlamaProcess, start_llama_server

MODEL = "tiny-llama"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def llamas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[LlamaProcess]]:
    root = tmp_path_factory.mktemp("llamas")
    servers = [start_llama_server(Path(root), alias=MODEL, extra_args=("--quiet",)) for _ in range(2)]
    yield servers
    for server in servers:
        server.stop()


def client(proxy: RunningProxy) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=proxy.url + "/v1", api_key="unused", max_retries=0, timeout=30)


def served_by(proxy: RunningProxy, url: str) -> float:
    return proxy.metric("warden_upstream_responses_total", {"group": "main", "backend": url, "status": "200"})


async def test_chat_streaming_completions_and_models(llamas: list[LlamaProcess], make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(proxy_config([llamas[0].url]))
    async with client(proxy) as openai:
        chat = await openai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8)
        assert chat.choices[0].message.content
        assert chat.usage is not None and chat.usage.completion_tokens == 8

        stream = await openai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=8,
                                                      stream=True)
        pieces = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
        assert len(pieces) >= 2 and "".join(pieces)

        done = await openai.completions.create(model=MODEL, prompt="once upon a time", max_tokens=8)
        assert done.choices[0].text

        models = await openai.models.list()
        assert [m.id for m in models.data] == [MODEL]


async def test_two_backends_share_the_load(llamas: list[LlamaProcess], make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(proxy_config([s.url for s in llamas]))
    async with client(proxy) as openai:
        replies = await asyncio.gather(*(
            openai.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=16)
            for _ in range(24)
        ))
    assert all(r.choices[0].message.content for r in replies)
    counts = [served_by(proxy, s.url) for s in llamas]
    assert sum(counts) == 24
    assert min(counts) >= 6, counts


async def test_killing_a_backend_fails_no_request_that_had_not_started_streaming(
    tmp_path: Path, make_proxy: ProxyFactory
) -> None:
    survivor = start_llama_server(tmp_path / "a", alias=MODEL, extra_args=("--quiet",))
    victim = start_llama_server(tmp_path / "b", alias=MODEL, extra_args=("--quiet",))
    try:
        proxy = await make_proxy(proxy_config([survivor.url, victim.url], health={"interval_s": 5}))
        async with client(proxy) as openai:

            async def one() -> str:
                reply = await openai.chat.completions.create(
                    model=MODEL, messages=MESSAGES, max_tokens=64
                )
                return reply.choices[0].message.content or ""

            async def stream_one() -> str | None:
                """A stream may fail only with the SSE error event, after it started."""
                started = False
                try:
                    stream = await openai.chat.completions.create(
                        model=MODEL, messages=MESSAGES, max_tokens=64, stream=True
                    )
                    text = ""
                    async for chunk in stream:
                        started = True
                        text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
                    return text
                except APIError:
                    assert started, "a stream failed before its first byte: it should have been retried"
                    return None

            tasks = [asyncio.create_task(one()) for _ in range(40)]
            streams = [asyncio.create_task(stream_one()) for _ in range(10)]
            await asyncio.sleep(0.05)
            victim.kill()
            results = await asyncio.gather(*tasks)
            await asyncio.gather(*streams)
            assert all(results)
            more = await asyncio.gather(*(one() for _ in range(10)))
            assert all(more)
        assert served_by(proxy, survivor.url) >= 10
        assert proxy.metric("warden_upstream_ejections_total", {"group": "main", "backend": victim.url}) >= 1
        assert proxy.metric("warden_upstream_retries_total", {"group": "main"}) >= 1  # the kill hit live requests
    finally:
        survivor.stop()
        victim.kill()
