"""How each API streams text, so one hold-back enforcer can serve chat, completions, Responses and Messages.

A codec splits one parsed event into text pieces, each on a channel (a choice's content, one tool
call's arguments, a Responses output part, a Messages content block), and what is left of the
event once its text is taken out. It rebuilds an event carrying released text for a channel, and
says which events close channels. Events that carry no streamed pieces (`response.completed`,
`message_start`, usage chunks, errors) are "whole": their text is scanned as one JSON document.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy.wire.sse import SSEDecoder, SSEEvent, choice_index
from proxy.wire.texts import ANSWER_CONTROL, ANSWER_SLOTS, OPAQUE, declared, text_slots

Channel = tuple[Hashable, ...]


@dataclass
class Split:
    """One event, taken apart: its pieces of streamed text, and the rest (None when nothing else is left)."""

    pieces: list[tuple[Channel, str]] = field(default_factory=list)
    rest: dict[str, Any] | None = None
    closes: list[Channel] | None = None  # channels (or their prefixes: a choice) that end with this event
    whole: bool = False  # no streamed pieces: scan the event's text as one document


class Codec(Protocol):
    def split(self, name: str, event: dict[str, Any]) -> Split: ...

    def rebuild(self, channel: Channel, text: str) -> bytes: ...

    def encode(self, name: str, event: dict[str, Any]) -> bytes: ...

    def blocked(self, channel: Channel | None) -> bytes: ...


def _take_text(node: Any, path: tuple[Hashable, ...], found: list[tuple[Channel, str]]) -> None:
    """Pops every answer-text string out of `node`, keyed by a path that is stable across events.

    List elements that carry an `index` (streamed tool calls) are keyed by it, not by their
    position: parallel tool calls arrive one element per event, each at position 0.
    """
    if isinstance(node, dict):
        for key in list(node):
            value = node[key]
            if key in OPAQUE or (key in ANSWER_CONTROL and isinstance(value, str)):
                continue
            if isinstance(value, str):
                found.append(((*path, key), node.pop(key)))
            elif isinstance(value, (dict, list)):
                _take_text(value, (*path, key), found)
    elif isinstance(node, list):
        for position, item in enumerate(node):
            if isinstance(item, str):
                continue  # a bare string in a streamed list has no stable key: left for the whole-event scan
            index = item.get("index") if isinstance(item, dict) else None
            key = ("#", index if isinstance(index, int) and not isinstance(index, bool) else position)
            _take_text(item, (*path, key), found)


def _build(path: tuple[Hashable, ...], text: str) -> dict[str, Any]:
    """The smallest object that puts `text` at `path` (the inverse of `_take_text` for one piece)."""
    node: Any = text
    for step in reversed(path):
        if isinstance(step, tuple):
            node = [{"index": step[1], **node}] if isinstance(node, dict) else [node]
        else:
            node = {step: node}
    return node  # type: ignore[no-any-return]


def _substantive(node: Any) -> bool:
    """Whether what is left of an event still says something (a role, a tool call's id, a finish)."""
    if isinstance(node, dict):
        return any(k not in ("index", "type") and _substantive(v) for k, v in node.items())
    if isinstance(node, list):
        return any(_substantive(v) for v in node)
    return node is not None and node != ""


class ChatCodec:
    """Chat completion and legacy completion chunks: `choices[].delta.*` and `choices[].text`."""

    def __init__(self) -> None:
        self._envelope: dict[str, Any] = {}

    def split(self, name: str, event: dict[str, Any]) -> Split:
        choices = event.get("choices")
        if not isinstance(choices, list) or not choices:
            return Split(rest=event, whole=True)
        self._envelope = {k: v for k, v in event.items() if k not in ("choices", "usage")}
        found: list[tuple[Channel, str]] = []
        closes: list[Channel] = []
        kept = []
        for choice in choices:
            if not isinstance(choice, dict):
                continue  # a backend's malformed choice carries nothing that can be scanned
            index = choice_index(choice)
            choice.pop("logprobs", None)  # token scores spell out the text still held back
            body = {k: v for k, v in choice.items() if k not in ("index", "finish_reason")}
            _take_text(body, (index,), found)
            finishing = choice.get("finish_reason") is not None
            if finishing:
                closes.append((index,))
            if finishing or _substantive(body):
                kept.append({**body, "index": index, "finish_reason": choice.get("finish_reason")})
        rest = {**event, "choices": kept} if kept or event.get("usage") else None
        return Split(found, rest, closes or None)

    def rebuild(self, channel: Channel, text: str) -> bytes:
        index, *path = channel
        return self.encode("", {**self._envelope, "choices": [{"index": index, **_build(tuple(path), text),
                                                               "finish_reason": None}]})

    def encode(self, name: str, event: dict[str, Any]) -> bytes:
        return b"data: " + json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"

    def blocked(self, channel: Channel | None) -> bytes:
        index = channel[0] if channel is not None else 0
        legacy = channel is not None and channel[1:2] == ("text",)
        ending: dict[str, Any] = {"index": index, "finish_reason": "content_filter"}
        if not legacy:
            ending["delta"] = {}
        return self.encode("", {**self._envelope, "choices": [ending]}) + b"data: [DONE]\n\n"


class ResponsesCodec:
    """The Responses API's typed events: `*.delta` events stream text; every other event is whole."""

    def __init__(self) -> None:
        self._templates: dict[Channel, dict[str, Any]] = {}
        self._sequence = 0

    def split(self, name: str, event: dict[str, Any]) -> Split:
        kind = event.get("type") if isinstance(event.get("type"), str) else name
        if isinstance(kind, str) and kind.endswith(".delta") and isinstance(event.get("delta"), str):
            channel: Channel = (kind, event.get("item_id"), event.get("output_index"), event.get("content_index"),
                                event.get("summary_index"))
            text = event.pop("delta")
            event.pop("logprobs", None)
            self._templates[channel] = event
            return Split([(channel, text)])
        return Split(rest=event, whole=True)

    def rebuild(self, channel: Channel, text: str) -> bytes:
        template = self._templates[channel]
        return self.encode(str(channel[0]), {**template, "delta": text})

    def encode(self, name: str, event: dict[str, Any]) -> bytes:
        if "sequence_number" in event:  # pieces are merged or split: number the events as they leave
            event = {**event, "sequence_number": self._sequence}
            self._sequence += 1
        kind = event.get("type") if isinstance(event.get("type"), str) else name
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        return SSEEvent(data, kind or "").encode()

    def blocked(self, channel: Channel | None) -> bytes:
        return self.encode("error", {"type": "error", "code": "content_filter", "param": None,
                                     "message": "the answer was blocked by policy", "sequence_number": 0})


class MessagesCodec:
    """Anthropic Messages events: `content_block_delta` streams text per block; the rest are whole."""

    def __init__(self) -> None:
        self._kinds: dict[Channel, str] = {}

    def split(self, name: str, event: dict[str, Any]) -> Split:
        kind = event.get("type") if isinstance(event.get("type"), str) else name
        block = event.get("index")
        if kind == "content_block_delta" and isinstance(event.get("delta"), dict):
            delta = event["delta"]
            found: list[tuple[Channel, str]] = []
            _take_text(delta, (block,), found)
            for channel, _ in found:
                self._kinds[channel] = str(delta.get("type", ""))
            return Split(found, event if _substantive(delta) else None)
        if kind == "content_block_stop":
            return Split(rest=event, closes=[c for c in self._kinds if c[0] == block])
        return Split(rest=event, whole=True)

    def rebuild(self, channel: Channel, text: str) -> bytes:
        block, *path = channel
        delta = {"type": self._kinds.get(channel, "text_delta"), **_build(tuple(path), text)}
        return self.encode("content_block_delta", {"type": "content_block_delta", "index": block, "delta": delta})

    def encode(self, name: str, event: dict[str, Any]) -> bytes:
        kind = event.get("type") if isinstance(event.get("type"), str) else name
        return SSEEvent(json.dumps(event, separators=(",", ":"), ensure_ascii=False), kind or "").encode()

    def blocked(self, channel: Channel | None) -> bytes:
        error = {"type": "error", "error": {"type": "invalid_request_error",
                                            "message": "the answer was blocked by policy (content_filter)"}}
        return self.encode("error", error)


CODECS: dict[str, type[ChatCodec] | type[ResponsesCodec] | type[MessagesCodec]] = {
    "chat": ChatCodec, "completions": ChatCodec, "responses": ResponsesCodec, "messages": MessagesCodec,
}


def codec_for(api: str) -> Codec:
    return CODECS.get(api, ChatCodec)()


def _api_of(events: list[tuple[str, dict[str, Any]]]) -> str:
    """Which API a stream speaks, from its events' types (a stored answer does not carry its route)."""
    for name, event in events:
        kind = event.get("type") if isinstance(event.get("type"), str) else name
        if isinstance(kind, str) and kind.startswith("response."):
            return "responses"
        if kind in ("message_start", "content_block_start", "content_block_delta"):
            return "messages"
    return "chat"


def stream_text(body: bytes, api: str | None = None) -> list[str]:
    """A whole stream's text per channel, in channel order (choices, tool calls, blocks)."""
    events = []
    for event in SSEDecoder().events(body + b"\n\n"):
        try:
            obj = json.loads(event.data)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            events.append((event.event, obj))
    codec = codec_for(api or _api_of(events))
    parts: dict[Channel, list[str]] = {}
    for name, obj in events:
        for channel, text in codec.split(name, obj).pieces:
            parts.setdefault(channel, []).append(text)
    return ["".join(parts[channel]) for channel in sorted(parts, key=_order)]


def _order(channel: Channel) -> tuple[tuple[int, int, str], ...]:
    """Channels in index order (choice 0 before 1, block 2 before 10), whatever order they arrived in."""
    return tuple((0, step, "") if isinstance(step, int) else (1, 0, str(step)) for step in channel)


def output_text(content_type: str, body: bytes) -> str:
    """The output text of a whole answer as the client saw it: every answer slot of the JSON, or the stream's."""
    if content_type == "text/event-stream":
        return "\n".join(t for t in stream_text(body) if t)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(payload, dict):
        return ""
    return "\n".join(slot.get() for slot in text_slots(payload, ANSWER_CONTROL) if declared(slot.path, ANSWER_SLOTS))
