"""The SSE reader frames events as the spec does, whatever line endings and fields a server uses."""

from __future__ import annotations

import pytest

from proxy.wire.sse import SSEDecoder, SSEEvent

STREAM = ": a comment\n\nevent: response.output_text.delta\nid: 7\ndata: {\"delta\": \"hi\"}\n\ndata: a\ndata: b\n\n"


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
@pytest.mark.parametrize("size", [1, 2, 7, 1000])
def test_events_names_ids_and_multi_line_data_whatever_the_endings_and_chunks(newline: str, size: int) -> None:
    raw = STREAM.replace("\n", newline).encode()
    decoder = SSEDecoder()
    events = [e for i in range(0, len(raw), size) for e in decoder.events(raw[i:i + size])]
    events += decoder.close()
    assert events == [SSEEvent('{"delta": "hi"}', "response.output_text.delta", "7"), SSEEvent("a\nb")]


def test_an_event_encodes_back_to_what_was_read() -> None:
    event = SSEEvent("a\nb", "message_stop", "3")
    assert SSEDecoder().events(event.encode()) == [event]
