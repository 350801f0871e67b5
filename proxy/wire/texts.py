"""Where the scannable text sits in OpenAI request and response bodies, and how to put it back."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from proxy.wire.sse import stream_text


@dataclass
class Slot:
    """One string inside a JSON document, writable in place (for redaction)."""

    container: dict[str, Any] | list[Any]
    key: str | int

    def get(self) -> str:
        return self.container[self.key]  # type: ignore[index,no-any-return]

    def set(self, value: str) -> None:
        self.container[self.key] = value  # type: ignore[index]


def _strings(container: dict[str, Any], key: str) -> list[Slot]:
    value = container.get(key)
    if isinstance(value, str):
        return [Slot(container, key)]
    if isinstance(value, list):
        return [Slot(value, i) for i, item in enumerate(value) if isinstance(item, str)]
    return []


def request_slots(payload: dict[str, Any]) -> list[Slot]:
    """Chat messages (plain or text parts), completion prompts, embedding inputs."""
    slots: list[Slot] = []
    for message in payload.get("messages") or []:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            slots.append(Slot(message, "content"))
        elif isinstance(content, list):
            slots += [Slot(part, "text") for part in content
                      if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)]
    slots += _strings(payload, "prompt")
    slots += _strings(payload, "input")
    return slots


def response_slots(payload: dict[str, Any]) -> list[tuple[dict[str, Any], Slot]]:
    """(choice, slot) for each choice's message content or completion text."""
    found = []
    for choice in payload.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            found.append((choice, Slot(message, "content")))
        elif isinstance(choice.get("text"), str):
            found.append((choice, Slot(choice, "text")))
    return found


def system_prompt(payload: dict[str, Any]) -> str:
    """The instructions a leakage detector must not see repeated: system and developer messages."""
    parts = []
    for message in payload.get("messages") or []:
        if isinstance(message, dict) and message.get("role") in ("system", "developer"):
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)]
    return "\n".join(parts)


def output_text(content_type: str, body: bytes) -> str:
    """The output text of a whole answer: choices' content for JSON, joined deltas for SSE."""
    if content_type == "text/event-stream":
        return "\n".join(stream_text(body))
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(payload, dict):
        return ""
    return "\n".join(slot.get() for _, slot in response_slots(payload))
