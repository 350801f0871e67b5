"""A request's cost from a real llama.cpp server's `usage`: priced per token, and per GPU-second."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.proxy.conftest import ProxyFactory, proxy_config
from tests.support.llama import LlamaProcess, start_llama_server

MODEL = "tiny-llama"
ASK = {"model": MODEL, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8}


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaProcess]:
    server = start_llama_server(Path(tmp_path_factory.mktemp("llama")), alias=MODEL, extra_args=("--quiet",))
    yield server
    server.stop()


def priced(url: str, price: dict[str, object]) -> dict[str, object]:
    config = proxy_config([url])
    config["pricing"] = {"currency": "USD", "models": [{"model": "tiny-*", **price}]}
    return config


async def test_token_prices_charge_the_usage_the_server_reported(llama: LlamaProcess, make_proxy: ProxyFactory,
                                                                 http: aiohttp.ClientSession) -> None:
    proxy = await make_proxy(priced(llama.url, {"input_per_million": 3.0, "output_per_million": 15.0}))
    async with http.post(proxy.url + "/v1/chat/completions", json=ASK) as resp:
        assert resp.status == 200
        usage = (await resp.json())["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    expected = (usage["prompt_tokens"] * 3.0 + usage["completion_tokens"] * 15.0) / 1e6
    spent = proxy.metric("warden_spend_total", {"tenant": "anonymous", "model": MODEL, "currency": "USD"})
    assert spent == pytest.approx(expected, rel=1e-9)


async def test_a_gpu_second_price_charges_the_time_the_server_was_busy(llama: LlamaProcess, make_proxy: ProxyFactory,
                                                                       http: aiohttp.ClientSession) -> None:
    proxy = await make_proxy(priced(llama.url, {"gpu_second": 1.0, "gpus_per_replica": 2}))
    started = time.monotonic()
    async with http.post(proxy.url + "/v1/chat/completions", json=ASK) as resp:
        assert resp.status == 200
        await resp.read()
    elapsed = time.monotonic() - started
    spent = proxy.metric("warden_spend_total", {"tenant": "anonymous", "model": MODEL, "currency": "USD"})
    # alone on the one replica (share 1): 2 GPUs × the seconds upstream, which is under the whole request
    assert 2.0 * 0.0005 < spent <= 2.0 * elapsed  # generating 8 tokens takes the server more than half a ms
