"""Where text lives in the bodies of every scanned API, and how to write a redaction back in place.

One rule serves every API, both directions, JSON bodies and stream events alike: every string
in the document is text, except the values of a short list of control keys (ids, roles, enum
settings: `CONTROL`) and the subtrees of opaque keys (binary payloads, vectors, log-probabilities:
`OPAQUE`). A field no one has heard of yet is therefore scanned, not skipped: the guard fails
closed on new wire formats, duplicated or differently-cased keys included. A string that holds
JSON (tool-call `arguments`) is read as JSON, so a redaction inside it keeps it valid JSON.

`APIS` declares, per route, the slots where text is expected (the table in docs/policy.md);
the walker above does not need it to find text, but the coverage tests generate one probe per
declared slot from it, and review and drift read the prompt through `prompt_text`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

# String values under these keys are protocol, not prose: never scanned, never redacted.
CONTROL = frozenset({
    "model", "role", "type", "object", "id", "tool_call_id", "call_id", "item_id", "previous_response_id",
    "finish_reason", "stop_reason", "system_fingerprint", "service_tier", "status", "encoding_format",
    "reasoning_effort", "detail", "format", "voice", "modalities", "truncation", "include", "media_type",
    "tool_choice", "$schema", "$ref", "signature",
})
# In answers a tool's `name` is protocol too: the client dispatches on it (in requests it is scanned).
ANSWER_CONTROL = CONTROL | {"name"}
# Subtrees under these keys are not text at all (images, audio, files, vectors, token scores).
OPAQUE = frozenset({
    "image_url", "input_audio", "file_data", "b64_json", "embedding", "logprobs", "top_logprobs", "source",
    "redacted_thinking", "data_url",
})
# Keys whose string value is itself a JSON document (tool-call arguments).
JSON_TEXT = frozenset({"arguments"})
MAX_DEPTH = 64  # a body nested deeper than this is refused at the boundary; the walker stops here too


@dataclass(slots=True)
class Slot:
    """One string inside a JSON document, writable in place (for redaction)."""

    container: dict[str, Any] | list[Any]
    key: str | int
    path: str = ""
    after_set: Callable[[], None] | None = field(default=None, repr=False)

    def get(self) -> str:
        return self.container[self.key]  # type: ignore[index,no-any-return]

    def set(self, value: str) -> None:
        self.container[self.key] = value  # type: ignore[index]
        if self.after_set is not None:
            self.after_set()


def text_slots(document: Any, control: frozenset[str] = CONTROL) -> list[Slot]:
    """Every text string of a JSON document, in document order (`ANSWER_CONTROL` for answers and events)."""
    found: list[Slot] = []
    _walk(document, "", found, 0, control)
    return found


def _walk(node: Any, path: str, found: list[Slot], depth: int, control: frozenset[str]) -> None:
    if depth > MAX_DEPTH:
        return
    if isinstance(node, dict):
        items: Iterator[tuple[str | int, Any]] = iter(node.items())
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return
    for key, value in items:
        if isinstance(key, str) and (key in OPAQUE or (key in control and isinstance(value, str))):
            continue
        where = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
        if isinstance(value, str):
            if key in JSON_TEXT and _embedded(node, key, value, where, found, depth, control):
                continue
            found.append(Slot(node, key, where))
        elif isinstance(value, (dict, list)):
            _walk(value, where, found, depth + 1, control)


def _embedded(container: dict[str, Any] | list[Any], key: str | int, value: str, path: str, found: list[Slot],
              depth: int, control: frozenset[str]) -> bool:
    """Slots inside a string that holds a JSON object or array; writing one re-encodes the string."""
    if not value.lstrip().startswith(("{", "[")):
        return False
    try:
        inner = json.loads(value)
    except (ValueError, RecursionError):
        return False  # a partial or broken document: scanned as the plain text it is
    if not isinstance(inner, (dict, list)):
        return False

    def reencode() -> None:
        if isinstance(container, dict) and isinstance(key, str):
            container[key] = json.dumps(inner, ensure_ascii=False)

    start = len(found)
    _walk(inner, path, found, depth + 1, control)
    for slot in found[start:]:
        slot.after_set = reencode
    return True


def joined(document: Any, control: frozenset[str] = CONTROL) -> str:
    """All text of a document as one string: what token estimates, review and drift read."""
    return "\n".join(slot.get() for slot in text_slots(document, control))


@dataclass(frozen=True)
class Api:
    """One scanned API: its route, and the slots its bodies and streams are expected to carry text in."""

    name: str
    route: str
    request: tuple[str, ...]
    response: tuple[str, ...]
    stream: tuple[str, ...]  # `event type: path` for typed streams, `path` within a chat chunk
    error_shape: str = "openai"  # how errors on this route are shaped (`anthropic` for Messages)
    answers_text: bool = True  # embeddings answer vectors: no response transform


APIS: dict[str, Api] = {api.route: api for api in (
    Api("chat", "/v1/chat/completions",
        request=("messages[].content", "messages[].content[].text", "messages[].name",
                 "messages[].tool_calls[].function.arguments", "messages[].function_call.arguments",
                 "messages[].refusal", "messages[].reasoning_content", "tools[].function.description",
                 "tools[].function.parameters", "functions[].description", "response_format.json_schema",
                 "prediction.content", "user", "metadata", "stop"),
        response=("choices[].message.content", "choices[].message.content[].text", "choices[].message.refusal",
                  "choices[].message.reasoning_content", "choices[].message.reasoning",
                  "choices[].message.tool_calls[].function.arguments",
                  "choices[].message.function_call.arguments"),
        stream=("choices[].delta.content", "choices[].delta.refusal", "choices[].delta.reasoning_content",
                "choices[].delta.reasoning", "choices[].delta.tool_calls[].function.arguments")),
    Api("completions", "/v1/completions",
        request=("prompt", "prompt[]", "suffix", "user", "stop"),
        response=("choices[].text",), stream=("choices[].text",)),
    Api("embeddings", "/v1/embeddings", request=("input", "input[]", "input[][]", "user"),
        response=(), stream=(), answers_text=False),
    Api("responses", "/v1/responses",
        request=("input", "input[].content", "input[].content[].text", "input[].arguments", "input[].output",
                 "instructions", "tools[].description", "tools[].parameters", "text.format.schema", "metadata",
                 "user"),
        response=("output[].content[].text", "output[].content[].refusal", "output[].arguments",
                  "output[].summary[].text", "output[].content[].text", "output_text", "instructions"),
        stream=("response.output_text.delta: delta", "response.refusal.delta: delta",
                "response.function_call_arguments.delta: delta", "response.reasoning_text.delta: delta",
                "response.reasoning_summary_text.delta: delta", "response.output_text.done: text",
                "response.output_item.done: item", "response.completed: response")),
    Api("messages", "/v1/messages",
        request=("system", "system[].text", "messages[].content", "messages[].content[].text",
                 "messages[].content[].input", "messages[].content[].content", "tools[].description",
                 "tools[].input_schema", "metadata"),
        response=("content[].text", "content[].input", "content[].thinking"),
        stream=("content_block_delta: delta.text", "content_block_delta: delta.partial_json",
                "content_block_delta: delta.thinking", "content_block_start: content_block"),
        error_shape="anthropic"),
)}


def api_for(route: str) -> Api | None:
    return APIS.get(route)


# Every declared answer slot of every API: what a reviewer is shown as "the output" (scanning reads more).
ANSWER_SLOTS = frozenset(path for api in APIS.values() for path in api.response)


def declared(path: str, patterns: frozenset[str]) -> bool:
    """Whether a slot's path (`choices[0].message.content`) is one of the declared patterns (`choices[].…`),
    or inside one (a key of tool-call arguments)."""
    general = re.sub(r"\[\d+\]", "[]", path)
    return any(general == p or general.startswith((p + ".", p + "[")) for p in patterns)


def system_prompt(payload: dict[str, Any]) -> str:
    """The instructions a leakage detector must not see repeated: system/developer messages, `instructions`,
    and the Messages API's `system`."""
    parts = _texts(payload.get("system")) + _texts(payload.get("instructions"))
    for message in _items(payload.get("messages")) + _items(payload.get("input")):
        if message.get("role") in ("system", "developer"):
            parts += _texts(message.get("content"))
    return "\n".join(parts)


def prompt_text(payload: dict[str, Any]) -> str:
    """What the model was asked, as a reviewer reads it: `role: text` per message, else every text slot."""
    messages = _items(payload.get("messages")) or _items(payload.get("input"))
    if not messages:
        return joined(payload)
    lines = []
    for message in messages:
        text = "\n".join(_texts({k: v for k, v in message.items() if k != "role"}))
        role = message.get("role")
        lines.append(f"{role}: {text}" if isinstance(role, str) else text)
    return "\n\n".join(lines)


def _texts(value: Any) -> list[str]:
    """The text of a value that may be a bare string or a document holding strings."""
    return [value] if isinstance(value, str) else [slot.get() for slot in text_slots(value)]


def _items(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []
