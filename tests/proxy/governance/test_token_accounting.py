"""Token estimates read every text slot (proxy/wire/texts.py), so a limit cannot be dodged through tools,
instructions or another API's fields."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.proxy.conftest import ProxyFactory, UpstreamFactory
from tests.proxy.governance.conftest import governed_config, make_key

TOOL = {"type": "function", "function": {"name": "lookup", "description": "d" * 32_000, "parameters": {}}}


async def test_a_context_limit_counts_tools_instructions_and_system(make_upstream: UpstreamFactory,
                                                                     make_proxy: ProxyFactory,
                                                                     http: aiohttp.ClientSession) -> None:
    up = await make_upstream()
    key = make_key("small")
    proxy = await make_proxy(governed_config([up.url], [key], {"small": {"max_context_tokens": 2000}}))
    bulky: dict[str, dict[str, Any]] = {
        "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}], "tools": [TOOL]},
        "/v1/responses": {"input": "hi", "instructions": "i" * 32_000},
        "/v1/messages": {"max_tokens": 5, "system": [{"type": "text", "text": "s" * 32_000}],
                         "messages": [{"role": "user", "content": "hi"}]},
        "/v1/completions": {"prompt": "hi", "suffix": "x" * 32_000},
    }
    for route, body in bulky.items():
        async with http.post(proxy.url + route, json={"model": "fake-model", **body}, headers=key.headers) as resp:
            assert resp.status == 400, route
            assert "tokens; this key allows at most 2000" in (await resp.text()), route
    assert up.requests == []
