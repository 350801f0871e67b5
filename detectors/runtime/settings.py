"""Scanner runtime configuration (the `scanner:` section of warden.yaml).

Lives in `detectors` because the scanner process reads it without importing the proxy.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The scanner's model kinds; detectors/runtime/models.py maps each to its loader.
ModelKind = Literal["classifier", "embedder", "detoxify", "toxic_bilstm", "pii"]


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

    @property
    def address(self) -> str:
        return f"tcp://{self.tcp}" if self.tcp else f"unix://{self.socket}"
