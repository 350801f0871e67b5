"""The hold-back window: whatever the chunking, nothing the policy redacts or blocks is ever released."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from detectors.builtin_types import PatternsOptions
from detectors.redact import Redactor
from proxy.policy.chain import ChainEntry, DetectorChain
from proxy.policy.engine import PolicyEngine, Scope, Verdict
from proxy.policy.metrics import PolicyMetrics
from proxy.policy.settings import PolicySettings, RuleSettings
from proxy.policy.stream import StreamEnforcer
from tests.support.regex_pii import RegexPII

SECRETS = {
    "EMAIL_ADDRESS": "jane.doe@example.com",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "US_SSN": "078-05-1120",
    "PHONE_NUMBER": "(555) 867-5309",
}
TEXT = ("Sure. You can reach Jane at {EMAIL_ADDRESS} or call {PHONE_NUMBER} after nine. Her card is "
        "{CREDIT_CARD} and the SSN on file is {US_SSN}. Anything else?").format(**SECRETS)
EXPECTED = "".join(TEXT)
for label, value in SECRETS.items():
    EXPECTED = EXPECTED.replace(value, f"<{label}>")


def enforcer(action: str = "redact", window: int = 64) -> tuple[StreamEnforcer, list[Verdict]]:
    chain = DetectorChain([ChainEntry(RegexPII(), PatternsOptions(name="pii", type="patterns"))],
                          PolicyMetrics(CollectorRegistry()))
    engine = PolicyEngine(PolicySettings(rules=[RuleSettings(detector="pii", action=action)]))
    recorded: list[Verdict] = []

    async def scan(text: str) -> Verdict:
        return engine.decide(await chain.scan([text], "response"), "response", Scope())

    return StreamEnforcer(scan, recorded.append, window, Redactor()), recorded


def sse_chunks(pieces: list[str]) -> list[bytes]:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    out = [json.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})]
    out += [json.dumps({**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]})
            for p in pieces]
    out.append(json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    return [f"data: {o}\n\n".encode() for o in out] + [b"data: [DONE]\n\n"]


async def run(guard: StreamEnforcer, chunks: list[bytes], byte_split: int | None = None) -> bytes:
    wire = b"".join(chunks)
    if byte_split is not None:  # TCP may cut an SSE event anywhere, too
        chunks = [wire[:byte_split], wire[byte_split:]]
    out = [await guard.feed(c) for c in chunks]
    return b"".join(out) + await guard.finish()


def parse(stream: bytes) -> tuple[str, list[str | None], bool]:
    text, reasons, done = "", [], False
    for event in stream.decode().split("\n\n"):
        if not event:
            continue
        data = event.removeprefix("data: ")
        if data == "[DONE]":
            done = True
            continue
        chunk: dict[str, Any] = json.loads(data)
        assert chunk["object"] == "chat.completion.chunk" and chunk["id"] == "c"
        for choice in chunk["choices"]:
            text += choice.get("delta", {}).get("content") or ""
            reasons.append(choice.get("finish_reason"))
    return text, reasons, done


@pytest.mark.parametrize("mode", ["char", "words"])
async def test_one_character_or_one_word_per_chunk_leaks_nothing(mode: str) -> None:
    pieces = list(TEXT) if mode == "char" else [w + " " for w in TEXT.split(" ")]
    if mode == "words":
        pieces[-1] = pieces[-1].rstrip()
    guard, recorded = enforcer()
    text, reasons, done = parse(await run(guard, sse_chunks(pieces)))
    assert text == EXPECTED
    assert reasons[-1] == "stop" and done
    labels = sorted(d.finding.label for v in recorded for d in v.decisions)
    assert labels == sorted(SECRETS)  # each entity recorded once, however often the windows overlapped


async def test_every_split_offset_leaks_nothing() -> None:
    for offset in range(1, len(TEXT)):
        guard, _ = enforcer()
        text, _, done = parse(await run(guard, sse_chunks([TEXT[:offset], TEXT[offset:]])))
        assert text == EXPECTED, offset
        assert done


async def test_events_cut_at_every_byte_offset_leak_nothing() -> None:
    chunks = sse_chunks([TEXT[i:i + 7] for i in range(0, len(TEXT), 7)])
    wire_length = len(b"".join(chunks))
    for cut in range(1, wire_length, 13):
        guard, _ = enforcer()
        text, _, _ = parse(await run(guard, chunks, byte_split=cut))
        assert text == EXPECTED, cut


async def test_nothing_is_released_before_the_window_fills_then_it_flows() -> None:
    guard, _ = enforcer(window=64)
    released = b""
    for piece in TEXT[:60]:
        released += await guard.feed(sse_chunks([piece])[1])
    assert parse(released)[0] == ""  # 60 characters < window: all held
    for piece in TEXT[60:140]:
        released += await guard.feed(sse_chunks([piece])[1])
    shown = parse(released)[0]
    assert shown and EXPECTED.startswith(shown) and len(shown) <= 140 - 64


async def test_block_ends_with_content_filter_and_done_before_the_entity() -> None:
    guard, recorded = enforcer(action="block")
    out = await run(guard, sse_chunks(list(TEXT)))
    text, reasons, done = parse(out)
    assert reasons[-1] == "content_filter" and done
    assert all(v not in text for v in SECRETS.values())
    assert text == TEXT[: len(text)] and len(text) < TEXT.index(SECRETS["EMAIL_ADDRESS"])
    assert guard.stopped
    assert recorded[-1].action.name == "BLOCK"
