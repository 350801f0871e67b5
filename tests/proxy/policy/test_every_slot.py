"""Coverage proof: a marker placed in any slot of any scanned API, either direction, streamed or not, is redacted.

The cells are generated from the declared map (proxy/wire/texts.py `APIS`) plus a list of slots
clients and servers use that the map does not name: a slot added to the map without scanning,
or a field the walker skips, fails here. The upstream is scripted (tests/support/scripted_upstream.py)
so that every answer shape can carry the marker; the proxy is the real app on a real port.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.wire.streams import stream_text
from proxy.wire.texts import APIS, Api
from tests.proxy.conftest import ProxyFactory, RunningProxy, proxy_config
from tests.support.scripted_upstream import Answer, ScriptedUpstream, sse

MARKER = "zq-marker-4471"
SAID = f"please see {MARKER} right now"
OBJECT_SLOTS = ("metadata", "parameters", "input_schema", "json_schema", "schema", "content[].input")

# Slots that are not in the declared map but that clients or servers use, or that a hostile client tries.
EXTRA_REQUEST_CELLS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"Messages": [{"role": "user", "content": SAID}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"text": SAID}]}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": [{"type": "input_text", "text": SAID}]}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "unheard_of": {"x": [SAID]}}),
    ("/v1/chat/completions", {"messages": [{"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "mail", "arguments": json.dumps({"to": SAID})}}]}]}),
    ("/v1/embeddings", {"input": [[SAID, "x"], ["y"]]}),
    ("/v1/responses", {"input": [{"role": "user", "content": [{"type": "input_text", "text": SAID}]}]}),
    ("/v1/messages", {"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": SAID}]}]}]}),
]


def place(pattern: str, value: Any) -> Any:
    """The smallest document with `value` at a declared slot pattern such as `messages[].content[].text`."""
    node = value
    for segment in reversed(pattern.split(".")):
        key, _, lists = segment.partition("[")
        for _ in range(segment.count("[]")):
            node = [node]
        node = {key: node} if key else node
        del lists
    return node


def leaf(pattern: str) -> Any:
    return {"k": SAID} if pattern.endswith(OBJECT_SLOTS) else SAID


def request_cells() -> list[tuple[str, dict[str, Any]]]:
    cells = [(api.route, place(p, leaf(p))) for api in APIS.values() for p in api.request]
    return cells + EXTRA_REQUEST_CELLS


def response_cells() -> list[tuple[str, dict[str, Any]]]:
    cells = []
    for api in APIS.values():
        for pattern in api.response:
            value = json.dumps({"city": SAID}) if pattern.endswith("arguments") else leaf(pattern)
            cells.append((api.route, place(pattern, value)))
    return cells


def pieces(text: str, size: int = 3) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def chat_stream(path: str, legacy: bool = False) -> list[tuple[str, dict[str, Any] | str]]:
    """A chat (or completions) stream with the marker split over many events at `choices[].<path>`."""
    inner = path.removeprefix("choices[].")
    events: list[tuple[str, dict[str, Any] | str]] = []
    if "tool_calls" in inner:
        head = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "mail", "arguments": ""}}
        events.append(("", {"choices": [{"index": 0, "delta": {"tool_calls": [head]}}]}))
        for piece in pieces(json.dumps({"to": SAID})):
            call = {"index": 0, "function": {"arguments": piece}}
            events.append(("", {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}))
    else:
        for piece in pieces(SAID):
            events.append(("", {"choices": [{"index": 0, **place(inner, piece)}]}))
    events.append(("", {"choices": [{"index": 0, "finish_reason": "stop", **({} if legacy else {"delta": {}})}]}))
    events.append(("", "[DONE]"))
    return events


def responses_stream(slot: str) -> list[tuple[str, dict[str, Any] | str]]:
    kind, _, field = slot.partition(": ")
    whole = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": SAID}]}
    events: list[tuple[str, dict[str, Any] | str]] = [
        ("response.created", {"type": "response.created", "sequence_number": 0,
                              "response": {"object": "response", "output": []}})]
    if kind.endswith(".delta"):
        for n, piece in enumerate(pieces(SAID)):
            events.append((kind, {"type": kind, "item_id": "i1", "output_index": 0, "content_index": 0,
                                  "delta": piece, "sequence_number": n + 1}))
        events.append((kind[:-6] + ".done", {"type": kind[:-6] + ".done", "item_id": "i1", "output_index": 0,
                                             "sequence_number": 99}))
    else:
        value: Any = {"text": SAID, "item": whole, "response": {"object": "response", "output": [whole]}}[field]
        events.append((kind, {"type": kind, field: value, "sequence_number": 1}))
    return events


def messages_stream(slot: str) -> list[tuple[str, dict[str, Any] | str]]:
    kind, _, field = slot.partition(": ")
    events: list[tuple[str, dict[str, Any] | str]] = [
        ("message_start", {"type": "message_start", "message": {"type": "message", "role": "assistant",
                                                                 "content": [], "usage": {"input_tokens": 3}}})]
    if kind == "content_block_start":
        events.append((kind, {"type": kind, "index": 0, "content_block": {"type": "text", "text": SAID}}))
    else:
        name = field.removeprefix("delta.")
        delta_type = {"text": "text_delta", "partial_json": "input_json_delta", "thinking": "thinking_delta"}[name]
        said = json.dumps({"q": SAID}) if name == "partial_json" else SAID
        events.append(("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": {"type": "text", "text": ""}}))
        for piece in pieces(said):
            events.append((kind, {"type": kind, "index": 0, "delta": {"type": delta_type, name: piece}}))
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                     "usage": {"output_tokens": 9}}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def stream_cells() -> list[tuple[Api, str, list[tuple[str, dict[str, Any] | str]]]]:
    cells = []
    for api in APIS.values():
        for slot in api.stream:
            if api.name in ("chat", "completions"):
                cells.append((api, slot, chat_stream(slot, legacy=api.name == "completions")))
            elif api.name == "responses":
                cells.append((api, slot, responses_stream(slot)))
            elif api.name == "messages":
                cells.append((api, slot, messages_stream(slot)))
    return cells


@pytest.fixture
async def upstream() -> AsyncIterator[ScriptedUpstream]:
    up = await ScriptedUpstream().start()
    yield up
    await up.stop()


async def guarded(make_proxy: ProxyFactory, upstream: ScriptedUpstream, **policy: Any) -> RunningProxy:
    config = proxy_config([upstream.url])
    config["detectors"] = [{"name": "marker", "type": "patterns", "canaries": [MARKER]}]
    config["policy"] = {"stream_window_chars": 16, "rules": [{"detector": "marker", "action": "redact"}], **policy}
    return await make_proxy(config)


async def test_every_request_slot_is_redacted_before_it_leaves(make_proxy: ProxyFactory,
                                                                upstream: ScriptedUpstream) -> None:
    proxy = await guarded(make_proxy, upstream)
    leaked = []
    async with aiohttp.ClientSession() as http:
        for route, body in request_cells():
            upstream.bodies.clear()
            async with http.post(proxy.url + route, json={"model": "m", **body}) as resp:
                await resp.read()
                assert resp.status == 200, (route, body)
            sent = upstream.bodies[0].decode()
            if MARKER in sent or MARKER in json.dumps(json.loads(sent)) or "<CANARY>" not in sent:
                leaked.append((route, body))
    assert leaked == []


async def test_redacted_tool_call_arguments_stay_valid_json(make_proxy: ProxyFactory,
                                                            upstream: ScriptedUpstream) -> None:
    proxy = await guarded(make_proxy, upstream)
    call = {"id": "c1", "type": "function", "function": {"name": "mail", "arguments": json.dumps({"to": SAID})}}
    answer = {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None, "tool_calls": [call]}}]}
    upstream.answer = Answer(chunks=[json.dumps(answer).encode()])
    async with aiohttp.ClientSession() as http, http.post(proxy.url + "/v1/chat/completions",
                         json={"model": "m", "messages": [{"role": "assistant", "tool_calls": [call]}]}) as resp:
        got = await resp.json()
    sent = json.loads(upstream.bodies[0])
    for arguments in (sent["messages"][0]["tool_calls"][0]["function"]["arguments"],
                      got["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]):
        assert json.loads(arguments) == {"to": "please see <CANARY> right now"}
    assert got["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == "mail"


async def test_every_answer_slot_is_redacted(make_proxy: ProxyFactory, upstream: ScriptedUpstream) -> None:
    proxy = await guarded(make_proxy, upstream)
    leaked = []
    async with aiohttp.ClientSession() as http:
        for route, answer in response_cells():
            upstream.answer = Answer(chunks=[json.dumps(answer).encode()])
            async with http.post(proxy.url + route, json={"model": "m", "input": "hi", "messages": []}) as resp:
                got = (await resp.read()).decode()
            if MARKER in got or "<CANARY>" not in got:
                leaked.append((route, answer, got))
    assert leaked == []


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
async def test_every_stream_slot_is_redacted_whatever_the_line_endings(make_proxy: ProxyFactory,
                                                                       upstream: ScriptedUpstream,
                                                                       newline: str) -> None:
    proxy = await guarded(make_proxy, upstream)
    leaked = []
    async with aiohttp.ClientSession() as http:
        for api, slot, events in stream_cells():
            chunks = [f": keep-alive comment{newline}{newline}".encode(), *sse(events, newline)]
            upstream.answer = Answer(content_type="text/event-stream", chunks=chunks)
            async with http.post(proxy.url + api.route, json={"model": "m", "stream": True}) as resp:
                got = await resp.read()
            text = got.decode()
            joined = "".join(stream_text(got, api.name))
            if MARKER in text or MARKER in joined or "<CANARY>" not in text:
                leaked.append((api.name, slot, text))
    assert leaked == []


async def test_a_stream_keeps_its_event_names_and_numbers_in_order(make_proxy: ProxyFactory,
                                                                  upstream: ScriptedUpstream) -> None:
    proxy = await guarded(make_proxy, upstream)
    upstream.answer = Answer(content_type="text/event-stream",
                             chunks=sse(responses_stream("response.output_text.delta: delta")))
    async with aiohttp.ClientSession() as http, \
            http.post(proxy.url + "/v1/responses", json={"model": "m", "stream": True}) as resp:
        got = (await resp.read()).decode()
    blocks = [b for b in got.split("\n\n") if b.strip()]
    names = [b.split("\n")[0].removeprefix("event: ") for b in blocks]
    datas = [json.loads(b.split("data: ", 1)[1]) for b in blocks]
    assert all(d["type"] == n for n, d in zip(names, datas, strict=True))
    numbers = [d["sequence_number"] for d in datas]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    deltas = "".join(d["delta"] for d in datas if d["type"] == "response.output_text.delta")
    assert deltas == SAID.replace(MARKER, "<CANARY>")


async def test_error_bodies_and_other_content_types_are_scanned_too(make_proxy: ProxyFactory,
                                                                    upstream: ScriptedUpstream) -> None:
    proxy = await guarded(make_proxy, upstream)
    error = {"error": {"message": f"bad request: {SAID}", "type": "invalid_request_error"}}
    cases = [Answer(status=400, chunks=[json.dumps(error).encode()]),
             Answer(status=500, content_type="text/plain", chunks=[SAID.encode()]),
             Answer(status=200, content_type="text/html", chunks=[f"<p>{SAID}</p>".encode()])]
    async with aiohttp.ClientSession() as http:
        for answer in cases:
            upstream.answer = answer
            async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m", "messages": []}) as resp:
                got = (await resp.read()).decode()
                assert resp.status == answer.status
            assert MARKER not in got and "<CANARY>" in got
        upstream.answer = Answer(content_type="application/octet-stream", chunks=[b"\xff\xfe" + SAID.encode()])
        async with http.post(proxy.url + "/v1/chat/completions", json={"model": "m", "messages": []}) as resp:
            refused = await resp.json()
            assert resp.status == 502 and refused["error"]["code"] == "unscannable_response"
    assert proxy.metric("warden_policy_unscanned_total", {"reason": "not_text"}) == 1


async def test_an_answer_over_the_size_limit_is_refused_unless_configured_to_pass(make_proxy: ProxyFactory,
                                                                                 upstream: ScriptedUpstream) -> None:
    big = json.dumps({"choices": [{"index": 0, "message": {"content": SAID + " " + "x" * 4000}}]}).encode()
    upstream.answer = Answer(chunks=[big[:2000], big[2000:]])
    strict = await guarded(make_proxy, upstream, max_response_bytes=1024)
    lenient = await guarded(make_proxy, upstream, max_response_bytes=1024, oversize="pass")
    async with aiohttp.ClientSession() as http:
        async with http.post(strict.url + "/v1/chat/completions", json={"model": "m", "messages": []}) as resp:
            assert resp.status == 502 and (await resp.json())["error"]["code"] == "response_too_large"
        async with http.post(lenient.url + "/v1/chat/completions", json={"model": "m", "messages": []}) as resp:
            assert resp.status == 200 and await resp.read() == big
    for proxy in (strict, lenient):
        assert proxy.metric("warden_policy_unscanned_total", {"reason": "too_large"}) == 1


async def test_messages_errors_come_in_anthropic_shape(make_proxy: ProxyFactory, upstream: ScriptedUpstream) -> None:
    config = proxy_config([upstream.url])
    config["detectors"] = [{"name": "marker", "type": "patterns", "canaries": [MARKER]}]
    config["policy"] = {"rules": [{"detector": "marker", "action": "block"}]}
    proxy = await make_proxy(config)
    async with aiohttp.ClientSession() as http:
        body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": SAID}]}
        async with http.post(proxy.url + "/v1/messages", json=body) as resp:
            error = await resp.json()
            assert resp.status == 400
        async with http.post(proxy.url + "/v1/chat/completions", json={**body, "max_tokens": 5}) as resp:
            openai_error = await resp.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert "blocked by policy" in error["error"]["message"]
    assert openai_error["error"]["code"] == "content_policy_violation"
    assert upstream.bodies == []


def test_the_documented_slot_table_is_the_declared_map() -> None:
    """docs/policy.md shows users the map the code scans by: every declared slot appears there."""
    doc = (Path(__file__).resolve().parents[3] / "docs" / "policy.md").read_text(encoding="utf-8")
    missing = [(api.route, slot) for api in APIS.values() for slot in (*api.request, *api.response, *api.stream)
               if f"`{slot}`" not in doc]
    assert missing == []


async def test_token_scores_that_spell_out_redacted_text_are_dropped(make_proxy: ProxyFactory,
                                                                    upstream: ScriptedUpstream) -> None:
    proxy = await guarded(make_proxy, upstream)
    tokens = [{"token": piece, "logprob": -0.1, "top_logprobs": [{"token": piece, "logprob": -0.1}]}
              for piece in pieces(SAID)]
    answer = {"object": "chat.completion", "choices": [{"index": 0, "finish_reason": "stop", "logprobs": {
        "content": tokens}, "message": {"role": "assistant", "content": SAID}}]}
    chunks = sse([("", {"choices": [{"index": 0, "delta": {"content": t["token"]}, "logprobs": {"content": [t]}}]})
                  for t in tokens] + [("", "[DONE]")])
    async with aiohttp.ClientSession() as http:
        for answered, stream in ((Answer(chunks=[json.dumps(answer).encode()]), False),
                                 (Answer(content_type="text/event-stream", chunks=chunks), True)):
            upstream.answer = answered
            async with http.post(proxy.url + "/v1/chat/completions",
                                 json={"model": "m", "stream": stream, "logprobs": True}) as resp:
                got = (await resp.read()).decode()
            assert "<CANARY>" in got
            assert "marker" not in got.replace("<CANARY>", "")  # no token of the marker survives anywhere
