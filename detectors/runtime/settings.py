"""Scanner runtime configuration (the `scanner:` section of warden.yaml).

Lives in `detectors` because the scanner process reads it without importing the proxy.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The scanner's model kinds; detectors/runtime/models.py maps each to its loader.
ModelKind = Literal["classifier", "embedder", "detoxify", "toxic_bilstm", "pii"]
# Kinds whose runner pads every text to one width (the BiLSTM: 100 ids, as trained): grouping their
# texts by length would only split a batch into more forward passes that each cost a full-width one.
ONE_WIDTH_KINDS = frozenset({"toxic_bilstm"})
# Kinds whose ops are too small to split over threads: a second thread only adds hand-offs (the
# BiLSTM costs ~5x the CPU per text on two threads; bench/guard.py).
ONE_THREAD_KINDS = frozenset({"toxic_bilstm"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSettings(_Section):
    task: str = Field(description="name callers use, e.g. toxicity or embed")
    kind: ModelKind = Field(
        description="classifier/embedder: a transformers directory; detoxify: a detoxify checkpoint; "
        "toxic_bilstm: the toxic-comment-classifier wheel's weights; pii: presidio"
    )
    path: str = Field("", description="where the model lives (a directory or checkpoint file), per kind")
    options: dict[str, Any] = Field(default_factory=dict, description="kind-specific settings")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    max_batch: int = Field(64, ge=1)
    max_wait_ms: float = Field(5.0, ge=0)
    max_length: int = Field(128, ge=8, description="tokens per text; longer texts are truncated")
    queue_size: int = Field(4096, ge=1, description="items waiting per priority before callers get 'overloaded'")
    quantize_int8: bool = Field(False, description="int8 dynamic quantization of Linear layers (CPU only)")
    activation: Literal["sigmoid", "softmax"] = "sigmoid"
    cuda_graphs: bool = Field(False, description="CUDA only: capture the forward pass per (batch, length) bucket "
                              "as a CUDA graph and replay it (no per-kernel host Python); ignored on CPU")
    torch_threads: int | None = Field(None, ge=1, description="CPU threads for this model's forward pass; default: "
                                      "1 for toxic_bilstm, else the scanner's torch_threads")

    def forward_threads(self, scanner_threads: int | None) -> int | None:
        """The threads this model's device thread runs with (None: torch's own default). Each device
        thread sets its own, as torch's count may follow the last thread that set one."""
        if self.torch_threads is not None:
            return self.torch_threads
        return 1 if self.kind in ONE_THREAD_KINDS else scanner_threads


class ScannerSettings(_Section):
    mode: Literal["managed", "external", "off"] = Field(
        "managed", description="managed: `warden serve` starts and supervises it; external: connect only"
    )
    socket: str = Field(".warden/scanner.sock", description="Unix socket path")
    tcp: str | None = Field(None, description="host:port to listen on / connect to instead of the socket")
    models: list[ModelSettings] = Field(default_factory=list)
    torch_threads: int | None = Field(None, ge=1)
    call_timeout_s: float = Field(5.0, gt=0)
    ready_timeout_s: float = Field(180.0, gt=0)
    health_interval_s: float = Field(5.0, gt=0, description="supervisor pings the scanner this often")
    health_failures: int = Field(3, ge=1, description="missed pings in a row that get a hung scanner restarted")
    restart_backoff_s: float = Field(0.5, gt=0)
    restart_backoff_max_s: float = Field(30.0, gt=0)
    workers: int = Field(1, ge=1, le=64, description="scanner processes, each with every model, on its own socket "
                         "(`socket` with .1, .2, ... before its suffix) or TCP port (+1, +2, ...); the proxy's "
                         "client spreads frames over them")

    def worker(self, index: int) -> ScannerSettings:
        """Worker `index`'s own settings: one process on its own address (worker 0 keeps the configured one)."""
        if index == 0:
            return self.model_copy(update={"workers": 1})
        if self.tcp:
            host, _, port = self.tcp.rpartition(":")
            return self.model_copy(update={"workers": 1, "tcp": f"{host}:{int(port) + index}"})
        stem, dot, suffix = self.socket.rpartition(".")
        path = f"{stem}.{index}.{suffix}" if dot and "/" not in suffix else f"{self.socket}.{index}"
        return self.model_copy(update={"workers": 1, "socket": path})

    @property
    def address(self) -> str:
        """Where to connect; with several workers, their addresses comma-separated (ScannerClient spreads)."""
        if self.workers > 1:
            return ",".join(self.worker(i).address for i in range(self.workers))
        return f"tcp://{self.tcp}" if self.tcp else f"unix://{self.socket}"
