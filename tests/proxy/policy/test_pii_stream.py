"""The real PII detector (presidio in the scanner process) behind the stream guard, through Warden."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai import AsyncOpenAI

from tests.proxy.conftest import ProxyFactory, UpstreamFactory, proxy_config

ENTITIES = {
    "EMAIL_ADDRESS": "jane.doe@example.com",
    "PHONE_NUMBER": "(415) 867-5309",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "US_SSN": "536-22-8726",
}
ANSWER = ("Sure. You can reach her at {EMAIL_ADDRESS} or call {PHONE_NUMBER} after nine. The card is "
          "{CREDIT_CARD} and the SSN on file is {US_SSN}. Anything else?").format(**ENTITIES)


async def test_one_character_per_chunk_with_presidio_leaks_nothing(
    tmp_path: Path, make_upstream: UpstreamFactory, make_proxy: ProxyFactory
) -> None:
    pytest.importorskip("presidio_analyzer")
    up = await make_upstream()
    up.script.pieces = list(ANSWER)
    config = proxy_config([up.url])
    config["scanner"] = {"socket": str(tmp_path / "s.sock"), "torch_threads": 1, "call_timeout_s": 30,
                         "models": [{"task": "pii", "kind": "pii"}]}
    config["detectors"] = [{"name": "pii", "type": "scanner", "task": "pii", "timeout_s": 30, "on_error": "closed"}]
    # presidio scores a bare US phone number 0.4: the rule takes it from 0.3.
    config["policy"] = {"rules": [{"detector": "pii", "action": "redact", "threshold": 0.3}],
                        "redaction": {"DEFAULT": {"type": "replace", "numbered": True}}}
    proxy = await make_proxy(config)
    async with AsyncOpenAI(base_url=proxy.url + "/v1", api_key="k", max_retries=0, timeout=60) as openai:
        stream = await openai.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "contact?"}], stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    for value in ENTITIES.values():
        assert value not in text
    for label in ENTITIES:
        assert f"<{label}_1>" in text, text
    assert text.startswith("Sure. You can reach her at <EMAIL_ADDRESS_1> or call <PHONE_NUMBER_1>")
    assert text.endswith("Anything else?")
