"""The scanner's wire protocol: length-prefixed JSON frames, each validated by a pydantic model.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON. Requests
carry an id chosen by the client; replies carry it back, in whatever order they complete,
so one connection multiplexes many concurrent calls. Embedding vectors travel as base64 of
little-endian float32, a third of the size of JSON numbers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import struct
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic_core import PydanticSerializationError

MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_TEXTS_PER_CALL = 4096
_HEADER = struct.Struct(">I")

Priority = Literal["request", "background"]
ErrorKind = Literal["overloaded", "failed", "invalid", "unknown_task", "shutting_down"]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScanRequest(_Message):
    op: Literal["scan"] = "scan"
    id: int
    task: str
    texts: list[str] = Field(max_length=MAX_TEXTS_PER_CALL)
    priority: Priority = "request"


class PingRequest(_Message):
    op: Literal["ping"] = "ping"
    id: int


class MetricsRequest(_Message):
    op: Literal["metrics"] = "metrics"
    id: int


Request = Annotated[ScanRequest | PingRequest | MetricsRequest, Field(discriminator="op")]
REQUEST_ADAPTER: TypeAdapter[ScanRequest | PingRequest | MetricsRequest] = TypeAdapter(Request)


class Span(_Message):
    """One finding inside a text: what, how sure, where (character offsets), and why."""

    label: str
    score: float
    start: int
    end: int
    explanation: str = ""


class TaskInfo(_Message):
    kind: str
    output: Literal["scores", "vectors", "spans"]
    labels: list[str] = []
    dim: int | None = None
    device: str
    dtype: str
    model_version: str


class Reply(_Message):
    """One reply shape for every op; `ok` says which fields matter."""

    id: int
    ok: bool
    error: ErrorKind | None = None
    message: str | None = None
    labels: list[str] | None = None
    scores: list[list[float]] | None = None
    vectors: str | None = None
    dim: int | None = None
    spans: list[list[Span]] | None = None
    tasks: dict[str, TaskInfo] | None = None
    text: str | None = None


class FrameError(Exception):
    """The peer broke framing; the connection cannot be trusted any more."""


def encode(message: BaseModel) -> bytes:
    try:
        body = message.model_dump_json(exclude_none=True).encode()
    except PydanticSerializationError:
        if not isinstance(message, ScanRequest):
            raise
        # A text with a lone surrogate cannot be UTF-8: it failed the whole frame, and with it every
        # caller whose texts were coalesced into it. One U+FFFD per lone half keeps every offset.
        texts = [_scrub(t) for t in message.texts]
        body = message.model_copy(update={"texts": texts}).model_dump_json(exclude_none=True).encode()
    return _HEADER.pack(len(body)) + body


_SURROGATES = re.compile("[\ud800-\udfff]")


def _scrub(text: str) -> str:
    return text if text.isascii() else _SURROGATES.sub("\ufffd", text)


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next frame's body, or None at a clean end of stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("connection closed inside a frame header") from exc
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {size} bytes is over the {MAX_FRAME_BYTES}-byte limit")
    try:
        return await reader.readexactly(size)
    except asyncio.IncompleteReadError as exc:
        raise FrameError("connection closed inside a frame") from exc


def parse_request_id(body: bytes) -> int:
    """Best effort id of an invalid request, so its error reply still reaches the right caller."""
    try:
        value = json.loads(body).get("id")
    except (ValueError, AttributeError):
        return -1
    return value if isinstance(value, int) else -1


def pack_vectors(array: np.ndarray[Any, Any]) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode()


def unpack_vectors(data: str, dim: int) -> np.ndarray[Any, Any]:
    return np.frombuffer(base64.b64decode(data), dtype="<f4").reshape(-1, dim)
