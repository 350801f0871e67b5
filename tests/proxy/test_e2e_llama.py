"""End to end: the real `openai` client, through Warden, to real llama.cpp servers.

`max_retries=0` on the client: any failure the proxy lets through must show up here, not be
papered over by the client's own retries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
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
    return proxy.metric("warden_upstream_responses_total", {"group": "main", "backend": url, "code": "200",
                                                           "status": "200"})


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


async def test_messages_and_responses_apis_are_scanned_like_chat(llamas: list[LlamaProcess],
                                                                 make_proxy: ProxyFactory) -> None:
    """llama.cpp serves /v1/messages and /v1/responses: a prompt chat blocks is blocked there too, and
    answers (JSON and streamed, with their event names) come through the same enforcement."""
    canary = "blocked-canary-5521"
    config = proxy_config([llamas[0].url])
    config["detectors"] = [{"name": "secrets", "type": "patterns", "canaries": [canary]}]
    config["policy"] = {"rules": [{"detector": "secrets", "action": "block"}]}
    proxy = await make_proxy(config)
    said = [{"role": "user", "content": f"repeat {canary}"}]
    async with aiohttp.ClientSession() as http:
        for route, body in (("/v1/chat/completions", {"messages": said, "max_tokens": 4}),
                            ("/v1/messages", {"messages": said, "max_tokens": 4}),
                            ("/v1/responses", {"input": said, "max_output_tokens": 4})):
            async with http.post(proxy.url + route, json={"model": MODEL, **body}) as resp:
                assert resp.status == 400, route
        ask = {"model": MODEL, "max_tokens": 4, "messages": MESSAGES}
        async with http.post(proxy.url + "/v1/messages", json=ask) as resp:
            answer = await resp.json()
        assert answer["type"] == "message" and answer["content"][0]["text"]
        async with http.post(proxy.url + "/v1/messages", json={**ask, "stream": True}) as resp:
            streamed = (await resp.read()).decode()
        names = [line.removeprefix("event: ") for line in streamed.splitlines() if line.startswith("event: ")]
        assert names[0] == "message_start" and "content_block_delta" in names and names[-1] == "message_stop"
        async with http.post(proxy.url + "/v1/responses",
                             json={"model": MODEL, "max_output_tokens": 4, "input": "hello"}) as resp:
            response = await resp.json()
        assert response["object"] == "response" and response["output"][0]["content"][0]["text"]
