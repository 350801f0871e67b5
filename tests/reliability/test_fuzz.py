"""Property-based fuzzing of what parses untrusted bytes: request bodies, and a backend's SSE and JSON."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.base import Finding
from detectors.redact import Operator, Redactor
from proxy.errors import InvalidRequest
from proxy.policy.audit import AuditTap
from proxy.policy.buffered import JsonEnforcer
from proxy.policy.engine import Action, Decision, Verdict
from proxy.policy.stream import StreamEnforcer
from proxy.routes import validate_openai
from proxy.wire.body import parse_object
from proxy.wire.sse import SSEDecoder
from proxy.wire.streams import output_text

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
                           max_leaves=20)
# Events shaped like a backend's, broken at every level: choices of any type, deltas of any type.
events = st.one_of(
    json_values.map(lambda v: b"data: " + json.dumps(v).encode() + b"\n\n"),
    st.fixed_dictionaries({"choices": st.lists(st.one_of(json_values, st.fixed_dictionaries(
        {"index": json_values, "delta": st.one_of(json_values, st.fixed_dictionaries({"content": json_values})),
         "finish_reason": json_values})), max_size=3)}).map(lambda v: b"data: " + json.dumps(v).encode() + b"\n\n"),
    st.binary(max_size=64), st.just(b"data: [DONE]\n\n"), st.just(b"\r\n\r\n"),
)


def splits(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


async def flag_everything(text: str) -> Verdict:
    finding = Finding("fuzz", "X", 0.9, 0, min(len(text), 3))
    return Verdict(Action.REDACT, [Decision(finding, Action.REDACT, 0)] if text else [])


@FUZZ
@given(st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()))
def test_request_bodies_are_parsed_or_refused_cleanly(body: bytes) -> None:
    try:
        validate_openai(parse_object(body))
    except InvalidRequest as error:
        assert error.status == 400 and error.message


@FUZZ
@given(st.lists(events, max_size=12), st.lists(st.integers(min_value=0), max_size=8))
def test_sse_decoding_does_not_depend_on_chunking(stream: list[bytes], cuts: list[int]) -> None:
    data = b"".join(stream)
    whole = SSEDecoder().feed(data)
    decoder = SSEDecoder()
    assert [e for part in splits(data, cuts) for e in decoder.feed(part)] == whole


@FUZZ
@given(st.lists(events, max_size=12), st.lists(st.integers(min_value=0), max_size=8), st.booleans())
def test_stream_transforms_never_raise_on_backend_garbage(stream: list[bytes], cuts: list[int], sse: bool) -> None:
    data = b"".join(stream)

    async def run() -> None:
        enforcer = StreamEnforcer(flag_everything, lambda v: None, 16, Redactor({"DEFAULT": Operator()}), 4096)
        audit_texts: list[list[str]] = []

        async def submit(texts: list[str]) -> None:
            audit_texts.append(texts)

        spawned: list[asyncio.Future[None]] = []
        audit = AuditTap(sse, 1 << 20, submit, lambda work: spawned.append(asyncio.ensure_future(work)))
        for part in splits(data, cuts):
            await enforcer.feed(part)
            assert await audit.feed(part) == part  # audit mode never changes a byte
        await enforcer.finish()
        await audit.finish()
        await asyncio.sleep(0)
        output_text("text/event-stream" if sse else "application/json", data)

    asyncio.run(run())


@FUZZ
@given(st.binary(max_size=256) | json_values.map(lambda v: json.dumps({"choices": [v]}).encode()))
def test_buffered_policy_passes_or_rewrites_any_body(body: bytes) -> None:
    async def scan(texts: list[str]) -> Verdict:
        return await flag_everything(texts[0] if texts else "")

    async def run() -> bytes:
        enforcer = JsonEnforcer(scan, lambda v: None, Redactor({"DEFAULT": Operator()}), 1 << 20, lambda r: None)
        return await enforcer.feed(body) + await enforcer.finish()

    out: Any = asyncio.run(run())
    assert isinstance(out, bytes)
