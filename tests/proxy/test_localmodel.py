"""The offline llama.cpp server is a faithful OpenAI-compatible upstream.

Other suites use it as Warden's real upstream, so these tests pin down exactly
the behaviour they rely on: model listing, chat (plain and SSE), completions,
and clean process lifecycle.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from proxy.localmodel import ensure_tiny_gguf, write_tiny_gguf
from tests.support.llama import LlamaProcess, free_port, start_llama_server

ALIAS = "tiny-llama"


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaProcess]:
    with start_llama_server(tmp_path_factory.mktemp("llama"), alias=ALIAS) as server:
        yield server


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return json.load(resp)


def _post(url: str, body: dict[str, Any]) -> urllib.request.Request:
    return urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )


def _post_json(url: str, body: dict[str, Any]) -> Any:
    with urllib.request.urlopen(_post(url, body), timeout=10) as resp:
        assert resp.status == 200
        return json.load(resp)


def test_models_lists_alias(llama: LlamaProcess) -> None:
    models = _get(llama.url + "/v1/models")
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == [ALIAS]


def test_health(llama: LlamaProcess) -> None:
    assert _get(llama.url + "/health") == {"status": "ok"}


def test_chat_completion(llama: LlamaProcess) -> None:
    body = {
        "model": ALIAS,
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello, wörld! 👋"},
        ],
        "max_tokens": 8,
    }
    reply = _post_json(llama.url + "/v1/chat/completions", body)
    assert reply["object"] == "chat.completion"
    assert reply["model"] == ALIAS
    message = reply["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert isinstance(message["content"], str) and message["content"]
    assert reply["choices"][0]["finish_reason"] in {"length", "stop"}
    assert 0 < reply["usage"]["completion_tokens"] <= 8


def test_chat_completion_stream(llama: LlamaProcess) -> None:
    body = {
        "model": ALIAS,
        "messages": [{"role": "user", "content": "stream please"}],
        "max_tokens": 8,
        "stream": True,
    }
    req = _post(llama.url + "/v1/chat/completions", body)
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        lines = [line.decode().rstrip("\r\n") for line in resp]
    events = [line for line in lines if line]
    assert all(line.startswith("data: ") for line in events), events
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: ") :]) for line in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text
    assert chunks[-1]["choices"][0]["finish_reason"] in {"length", "stop"}


def test_completions(llama: LlamaProcess) -> None:
    body = {"model": ALIAS, "prompt": "hello world", "max_tokens": 8}
    reply = _post_json(llama.url + "/v1/completions", body)
    assert reply["object"] == "text_completion"
    assert isinstance(reply["choices"][0]["text"], str)
    assert reply["choices"][0]["text"]


def test_stop_and_kill_leave_no_process(tmp_path: Path) -> None:
    port = free_port()
    server = start_llama_server(tmp_path, port=port)
    assert server.port == port and server.url == f"http://127.0.0.1:{port}"
    server.stop()
    assert server.proc.returncode == 0  # SIGTERM handled, not fatal
    with pytest.raises(ProcessLookupError):
        os.kill(server.proc.pid, 0)

    with start_llama_server(tmp_path) as crashing:  # reuses the written model
        crashing.kill()
        assert crashing.proc.returncode == -9
        with pytest.raises(OSError):
            urllib.request.urlopen(crashing.url + "/health", timeout=2)


def test_gguf_is_deterministic_small_and_cached(tmp_path: Path) -> None:
    a = write_tiny_gguf(tmp_path / "a.gguf", seed=1)
    b = write_tiny_gguf(tmp_path / "b.gguf", seed=1)
    c = write_tiny_gguf(tmp_path / "c.gguf", seed=2)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert a.stat().st_size < 10 * 1024 * 1024
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
    mtime = a.stat().st_mtime_ns
    assert ensure_tiny_gguf(a) == a and a.stat().st_mtime_ns == mtime


def test_startup_failure_reports_log_tail(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(RuntimeError, match="couldn't bind") as excinfo:
            start_llama_server(tmp_path, port=busy.getsockname()[1], timeout=10)
    assert "exited with code 1" in str(excinfo.value)
