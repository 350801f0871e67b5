"""A real, offline, OpenAI-compatible model server for Warden's tests and demos.

Warden sits in front of LLM endpoints, so exercising it honestly needs a genuine
upstream: real HTTP framing, real SSE streaming, real concurrency and real
failure modes -- not a hand-written fake that agrees with our own assumptions.
This module serves a *tiny random-weight* llama-architecture model through the
llama.cpp server (via the ``xllamacpp`` wheel).  We generate the GGUF ourselves
because there is no access to model hubs; the output is gibberish, but every
byte on the wire comes from the server people run in production.

Usage: ``python -m proxy.localmodel --port 8081`` (see ``--help``).
"""

from __future__ import annotations

import argparse
import logging
import os
import pathlib
import signal
import tempfile
import threading
from collections.abc import Sequence
from types import FrameType

import gguf
import numpy as np
import xllamacpp  # type: ignore[import-untyped, unused-ignore]

log = logging.getLogger("warden.localmodel")

DEFAULT_ALIAS = "tiny-llama"
DEFAULT_MODEL_PATH = pathlib.Path(".warden/models/tiny-llama.gguf")
DEFAULT_PORT = 8081

# Model shape: big enough to exercise every llama.cpp code path (GQA, RoPE,
# SwiGLU, several layers), small enough that a token costs well under a
# millisecond on one CPU thread and the file stays in the hundreds of KB.
_N_EMBD = 64
_N_LAYER = 2
_N_HEAD = 4
_N_HEAD_KV = 2
_N_FF = 128
_CTX_TRAIN = 4096

# Token ids fixed by the SentencePiece ("llama") tokenizer conventions.
_UNK, _BOS, _EOS = 0, 1, 2
_SPACE = "\u2581"  # SentencePiece's visible space marker
_WORDS = (
    "the of and to in is it you that he was for on are with as his they at be this "
    "have from or one had by word but not what all were we when your can said there "
    "use an each which she do how their if will up other about out many then them "
    "these so some her would make like him into time has look two more write go see "
    "hello world model token proxy policy request answer secret user assistant system"
)

# A deliberately plain Jinja template.  Without one llama.cpp falls back to
# ChatML, whose <|im_start|> markers our vocabulary would spell out char by char.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{ message['role'] }}: {{ message['content'] }}\n"
    "{% endfor %}"
    "{%- if add_generation_prompt %}assistant: {% endif %}"
)


def _vocabulary() -> tuple[list[str], list[float], list[int]]:
    """Build a SentencePiece-style vocab: specials, byte fallback, chars, words.

    The 256 byte tokens are what make *any* input tokenizable (llama.cpp's SPM
    tokenizer throws on a character it cannot byte-fall-back for).  Every prefix
    of every word is included because SPM only merges adjacent pieces whose
    concatenation is itself in the vocabulary.
    """
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [gguf.TokenType.UNKNOWN] + [gguf.TokenType.CONTROL] * 2
    types += [gguf.TokenType.BYTE] * 256
    pieces = [_SPACE] + [chr(c) for c in range(0x21, 0x7F)]
    for word in _WORDS.split():
        marked = _SPACE + word
        pieces += [marked[:i] for i in range(2, len(marked) + 1)]
    for piece in dict.fromkeys(pieces):  # dedupe, keep order
        tokens.append(piece)
        types.append(gguf.TokenType.NORMAL)
    # SPM merges the highest-scoring pair first; like SentencePiece, rank by id.
    scores = [0.0] * 259 + [float(-i) for i in range(len(tokens) - 259)]
    return tokens, scores, [int(t) for t in types]


def write_tiny_gguf(path: pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """Write a deterministic tiny random llama model to ``path`` atomically.

    Atomic (temp file + rename) so that concurrent test workers, or a server
    started while another process is still writing, never see a torn file.
    Output-projection rows of the byte/control tokens are zeroed so sampling
    (almost) never emits raw bytes or EOS: replies are readable ASCII gibberish
    whose length is governed by ``max_tokens``.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tokens, scores, types = _vocabulary()
    n_vocab = len(tokens)
    head_dim = _N_EMBD // _N_HEAD

    def rand(*shape: int, std: float = 0.1) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp_name, "llama")
        writer.add_name("warden-tiny-llama")
        writer.add_file_type(gguf.LlamaFileType.ALL_F32)
        writer.add_context_length(_CTX_TRAIN)
        writer.add_embedding_length(_N_EMBD)
        writer.add_block_count(_N_LAYER)
        writer.add_feed_forward_length(_N_FF)
        writer.add_head_count(_N_HEAD)
        writer.add_head_count_kv(_N_HEAD_KV)
        writer.add_rope_dimension_count(head_dim)
        writer.add_layer_norm_rms_eps(1e-5)
        writer.add_vocab_size(n_vocab)
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_unk_token_id(_UNK)
        writer.add_bos_token_id(_BOS)
        writer.add_eos_token_id(_EOS)
        writer.add_add_bos_token(True)
        writer.add_add_eos_token(False)
        writer.add_chat_template(CHAT_TEMPLATE)

        ones = np.ones(_N_EMBD, dtype=np.float32)
        output = rand(n_vocab, _N_EMBD, std=0.5)  # logit std ~4: peaked sampling
        output[: 3 + 256] = 0.0
        writer.add_tensor("token_embd.weight", rand(n_vocab, _N_EMBD, std=1.0))
        writer.add_tensor("output_norm.weight", ones)
        writer.add_tensor("output.weight", output)
        q_dim, kv_dim = _N_HEAD * head_dim, _N_HEAD_KV * head_dim
        for i in range(_N_LAYER):  # numpy shapes are ggml's ne[] reversed
            layer = {
                "attn_norm": ones,
                "attn_q": rand(q_dim, _N_EMBD),
                "attn_k": rand(kv_dim, _N_EMBD),
                "attn_v": rand(kv_dim, _N_EMBD),
                "attn_output": rand(_N_EMBD, q_dim),
                "ffn_norm": ones,
                "ffn_gate": rand(_N_FF, _N_EMBD),
                "ffn_up": rand(_N_FF, _N_EMBD),
                "ffn_down": rand(_N_EMBD, _N_FF),
            }
            for name, tensor in layer.items():
                writer.add_tensor(f"blk.{i}.{name}.weight", tensor)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.chmod(tmp_name, 0o644)  # mkstemp's 0600 would surprise other users
        os.replace(tmp_name, path)
    except BaseException:
        pathlib.Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def ensure_tiny_gguf(path: pathlib.Path, *, seed: int = 0) -> pathlib.Path:
    """Return ``path``, writing the tiny model first only if it is missing.

    Lets one cached model serve many runs, so restarts skip even the cheap write.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        write_tiny_gguf(path, seed=seed)
    return path


def run_server(
    model_path: pathlib.Path,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    n_ctx: int = 4096,
    n_parallel: int = 4,
    threads: int = 1,
    alias: str = DEFAULT_ALIAS,
    max_tokens: int = 256,
    verbose: bool = True,
    metrics: bool = False,
    stop: threading.Event | None = None,
) -> None:
    """Serve ``model_path`` over llama.cpp's OpenAI-compatible HTTP API; block.

    Endpoints: ``/v1/chat/completions`` (incl. ``stream``), ``/v1/completions``,
    ``/v1/models`` (listing ``alias`` as the model id) and ``/health``.
    ``xllamacpp.Server`` loads the model synchronously and only then binds, so
    once the "listening" line is logged ``/health`` answers 200; a bad model or
    a busy port raises ``RuntimeError`` instead.  ``port=0`` binds any free
    port (the log line says which).  ``n_ctx`` is split evenly across the
    ``n_parallel`` slots; ``max_tokens`` is the default for requests without
    one (llama.cpp does not cap explicit ones; the slot's context does).

    Returns when ``stop`` is set or, when called from the main thread, on
    SIGTERM/SIGINT; the server is shut down before returning, so callers (and
    test fixtures) never leak a listener.
    """
    params = xllamacpp.CommonParams()
    params.model.path = str(model_path)
    params.model_alias = {alias}
    params.hostnames = [host]
    params.port = port
    params.n_ctx = n_ctx
    params.n_parallel = n_parallel
    params.n_predict = max_tokens
    # Each connection a pooling client keeps open holds an HTTP worker.  With
    # llama.cpp's small default, 32 pooled aiohttp connections stalled on its 5 s
    # keep-alive timeout (~45 req/s instead of ~350).  Idle threads cost nothing.
    params.n_threads_http = 64
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.n_gpu_layers = 0
    params.fit_params = False  # nothing to fit on CPU; skips a probing pass
    params.warmup = False  # a warmup decode costs more than a real request
    params.cache_ram_mib = 64
    params.ui = False
    params.endpoint_metrics = metrics  # /metrics: llamacpp:requests_processing, requests_deferred, ...
    params.verbosity = 3 if verbose else 2  # 3 = llama.cpp's per-request logs
    stop = stop if stop is not None else threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    in_main = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGTERM, signal.SIGINT) if in_main else ()
    previous = {sig: signal.signal(sig, request_stop) for sig in signals}
    try:
        server = xllamacpp.Server(params)  # loads the model, *then* binds
        log.info("listening on %s as %r", server.listening_address, alias)
        stop.wait()
        del server  # its destructor stops the HTTP listener and the main loop
        log.info("stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None, prog: str = "python -m proxy.localmodel") -> None:
    """Command-line entry point: ``python -m proxy.localmodel --port N``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description=(
            "Serve a tiny random-weight llama model through llama.cpp's "
            "OpenAI-compatible API (/v1/chat/completions incl. streaming, "
            "/v1/completions, /v1/models, /health). Fully offline: the model "
            "is generated locally on first use. Its output is gibberish."
        ),
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="interface to bind")
    add("--port", type=int, default=DEFAULT_PORT, help="port to bind; 0 = any free")
    add(
        "--model",
        type=pathlib.Path,
        default=DEFAULT_MODEL_PATH,
        help="GGUF to serve; the tiny model is generated there if missing",
    )
    add("--alias", default=DEFAULT_ALIAS, help="model id reported by /v1/models")
    add("--seed", type=int, default=0, help="seed for generated weights")
    add("--threads", type=int, default=1, help="CPU threads for inference")
    add("--parallel", type=int, default=4, help="concurrently decoded requests")
    add("--ctx", type=int, default=4096, help="total context, split across slots")
    add("--max-tokens", type=int, default=256, help="for requests that set none")
    add("--quiet", action="store_true", help="hide llama.cpp's per-request logs")
    add("--metrics", action="store_true", help="serve Prometheus metrics on /metrics")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("gguf").setLevel(logging.WARNING)  # chatty GGUFWriter
    run_server(
        ensure_tiny_gguf(args.model, seed=args.seed),
        args.host,
        args.port,
        n_ctx=args.ctx,
        n_parallel=args.parallel,
        threads=args.threads,
        alias=args.alias,
        max_tokens=args.max_tokens,
        verbose=not args.quiet,
        metrics=args.metrics,
    )


if __name__ == "__main__":
    main()
