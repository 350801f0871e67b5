"""The scanner's wire protocol: length-prefixed MessagePack frames, each decoded into a typed struct.

A frame is a 4-byte big-endian length followed by that many bytes of MessagePack. Requests carry
an id chosen by the client; replies carry it back, in whatever order they complete, so one
connection multiplexes many concurrent calls. Scores and vectors travel as one raw little-endian
float32 block per frame (rows x width): no per-number encoding and no base64, so a reply costs
the same few microseconds for 1 text or 4,096. msgspec decodes straight into the structs (typed,
validated) without an intermediate dict. A frame whose body starts like a JSON object is read as
JSON and answered in JSON (bytes as base64): a debugging aid and the old format, never the
client's.
"""

from __future__ import annotations

import asyncio
import re
import struct
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from pydantic import BaseModel, ConfigDict

MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_TEXTS_PER_CALL = 4096
_HEADER = struct.Struct(">I")

Priority = Literal["request", "background"]
ErrorKind = Literal["overloaded", "failed", "invalid", "unknown_task", "shutting_down"]


class _Message(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, tag_field="op"):
    pass


class ScanRequest(_Message, tag="scan"):
    """`tokens`, when given, holds each text's token ids as raw little-endian int32 (already truncated,
    special tokens included), made by the same tokenizer as the task's (`TaskInfo.tokenizer`): the
    scanner then skips tokenizing them. An empty entry means "tokenize this text"."""

    id: int
    task: str
    texts: Annotated[list[str], msgspec.Meta(max_length=MAX_TEXTS_PER_CALL)]
    priority: Priority = "request"
    tokens: list[bytes] | None = None


class PingRequest(_Message, tag="ping"):
    id: int


class MetricsRequest(_Message, tag="metrics"):
    id: int


Request = ScanRequest | PingRequest | MetricsRequest


class Span(BaseModel):
    """One finding inside a text: what, how sure, where (character offsets), and why."""

    model_config = ConfigDict(extra="forbid")

    label: str
    score: float
    start: int
    end: int
    explanation: str = ""


class TaskInfo(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    kind: str
    output: Literal["scores", "vectors", "spans"]
    labels: list[str] = []
    dim: int | None = None
    device: str
    dtype: str
    model_version: str
    tokenizer: str = ""  # a fingerprint: callers sending token ids must have the same one
    # the rule by which the model skips texts that cannot hold what it finds ("pii:guarded"): a caller
    # that knows it may leave such texts out of its frames, with the same findings
    prefilter: str = ""


# A span on the wire: (label, score, start, end, explanation); pydantic Spans are for the callers.
WireSpan = tuple[str, float, int, int, str]


class Reply(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, kw_only=True):
    """One reply shape for every op; `ok` says which fields matter.

    `scores` and `vectors` are one float32 block, rows x `dim` (scores: one column per label); a
    list of rows is accepted too, for scripted test scanners and hand-written JSON.
    """

    id: int
    ok: bool
    error: ErrorKind | None = None
    message: str | None = None
    labels: list[str] | None = None
    scores: bytes | list[list[float]] | None = None
    vectors: bytes | list[list[float]] | None = None
    dim: int | None = None
    spans: list[list[WireSpan]] | None = None
    tasks: dict[str, TaskInfo] | None = None
    text: str | None = None


class FrameError(Exception):
    """The peer broke framing; the connection cannot be trusted any more."""


_MSGPACK = msgspec.msgpack.Encoder()
_JSON = msgspec.json.Encoder()
_REQUESTS = msgspec.msgpack.Decoder(Request)
_JSON_REQUESTS = msgspec.json.Decoder(Request)
_REPLIES = msgspec.msgpack.Decoder(Reply)
DecodeError = msgspec.DecodeError  # malformed or invalid: answered `invalid`, the connection stays


def is_json(body: bytes) -> bool:
    """A MessagePack map starts with 0x80-0x8f, 0xde or 0xdf; a JSON object with `{` (or blanks)."""
    return bool(body) and body[0] < 0x80


def encode(message: msgspec.Struct, as_json: bool = False) -> bytes:
    encoder = _JSON if as_json else _MSGPACK
    try:
        body = encoder.encode(message)
    except UnicodeEncodeError:
        if not isinstance(message, ScanRequest):
            raise
        # A text with a lone surrogate cannot be UTF-8: it failed the whole frame, and with it every
        # caller whose texts were coalesced into it. One U+FFFD per lone half keeps every offset.
        texts = [_scrub(t) for t in message.texts]
        body = encoder.encode(msgspec.structs.replace(message, texts=texts))
    return _HEADER.pack(len(body)) + body


def decode_request(body: bytes) -> ScanRequest | PingRequest | MetricsRequest:
    return _JSON_REQUESTS.decode(body) if is_json(body) else _REQUESTS.decode(body)


def decode_reply(body: bytes) -> Reply:
    return _REPLIES.decode(body)


class _RequestAdapter:
    """The name and method callers wrote against the pydantic protocol (scripted test scanners)."""

    validate_json = staticmethod(decode_request)


REQUEST_ADAPTER = _RequestAdapter()


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
        value = (msgspec.json.decode(body) if is_json(body) else msgspec.msgpack.decode(body)).get("id")
    except (msgspec.DecodeError, AttributeError):
        return -1
    return value if isinstance(value, int) else -1


def pack_rows(array: np.ndarray[Any, Any]) -> bytes:
    return np.ascontiguousarray(array, dtype="<f4").tobytes()


def unpack_rows(data: bytes | list[list[float]], dim: int) -> np.ndarray[Any, Any]:
    if isinstance(data, bytes):
        return np.frombuffer(data, dtype="<f4").reshape(-1, dim)
    return np.asarray(data, dtype=np.float32).reshape(-1, dim)


def pack_tokens(ids: np.ndarray[Any, Any]) -> bytes:
    return np.ascontiguousarray(ids, dtype="<i4").tobytes()
