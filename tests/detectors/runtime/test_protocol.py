"""The binary wire format: every message survives a round trip, rows travel as exact float32 blocks,
JSON frames are still understood, and a lone surrogate cannot fail a coalesced frame."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from detectors.runtime.protocol import (
    DecodeError,
    MetricsRequest,
    PingRequest,
    Reply,
    ScanRequest,
    TaskInfo,
    decode_reply,
    decode_request,
    encode,
    is_json,
    pack_rows,
    pack_tokens,
    parse_request_id,
    unpack_rows,
)


def body(frame: bytes) -> bytes:
    (size,) = struct.unpack(">I", frame[:4])
    assert size == len(frame) - 4
    return frame[4:]


def test_requests_round_trip_in_messagepack() -> None:
    tokens = [pack_tokens(np.array([101, 7, 102])), b""]
    for message in (ScanRequest(id=3, task="toxicity", texts=["a", "b"], priority="background", tokens=tokens),
                    PingRequest(id=4), MetricsRequest(id=5)):
        raw = body(encode(message))
        assert not is_json(raw)
        assert decode_request(raw) == message
    decoded = decode_request(body(encode(ScanRequest(id=3, task="t", texts=["x"], tokens=tokens))))
    assert isinstance(decoded, ScanRequest) and decoded.tokens is not None
    assert np.frombuffer(decoded.tokens[0], "<i4").tolist() == [101, 7, 102]


def test_rows_travel_as_exact_float32_blocks() -> None:
    rows = np.random.default_rng(0).random((37, 6), dtype=np.float32)
    info = {"tox": TaskInfo(kind="classifier", output="scores", labels=["a"], device="cpu", dtype="float32",
                            model_version="v", tokenizer="abc")}
    reply = Reply(id=9, ok=True, labels=list("abcdef"), scores=pack_rows(rows), dim=6, tasks=info)
    back = decode_reply(body(encode(reply)))
    assert back == reply and back.scores is not None and back.dim == 6
    np.testing.assert_array_equal(unpack_rows(back.scores, back.dim), rows)  # bit for bit
    assert len(body(encode(reply))) < rows.nbytes + 200  # no per-number encoding, no base64
    listed = decode_reply(body(encode(Reply(id=1, ok=True, scores=[[1.0, 2.0]]))))
    assert listed.scores is not None
    np.testing.assert_array_equal(unpack_rows(listed.scores, 2), [[1.0, 2.0]])


def test_json_frames_are_read_and_invalid_ones_keep_their_id() -> None:
    assert decode_request(b'{"op": "ping", "id": 9}') == PingRequest(id=9)
    assert b'"ok":true' in body(encode(Reply(id=9, ok=True), as_json=True))
    for bad in (b'{"op": "scan", "id": 7, "task": 5}', b"not json", b'{"op": "dance", "id": 8}',
                body(encode(ScanRequest(id=7, task="t", texts=["x"] * 4097)))):
        with pytest.raises(DecodeError):
            decode_request(bad)
    assert parse_request_id(b'{"op": "scan", "id": 7, "task": 5}') == 7
    assert parse_request_id(body(encode(ScanRequest(id=11, task="t", texts=["x"] * 4097)))) == 11
    assert parse_request_id(b"\xc1") == -1


def test_a_lone_surrogate_is_replaced_not_fatal() -> None:
    decoded = decode_request(body(encode(ScanRequest(id=1, task="t", texts=["ok", "ab\ud800c"]))))
    assert isinstance(decoded, ScanRequest) and decoded.texts == ["ok", "ab\ufffdc"]
