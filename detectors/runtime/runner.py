"""What the scanner needs from a loaded model, whatever its kind: the `Runner` protocol.

It sits below the batcher, the server and every kind's loader, so that each of them can name it
without importing another (a loader never needs the batcher, nor the batcher torch). Data members
are read-only properties here because runners declare some of them as class constants
(`output = "spans"`) and others per instance; a property accepts both.
"""

from __future__ import annotations

from collections.abc import Sequence, Sized
from typing import Any, Protocol

from detectors.runtime.settings import ModelSettings


class Runner(Protocol):
    """Inference in three steps the batcher overlaps across threads: tokenize, collate, forward.

    `tokenize` returns one item per text whose `len()` groups texts of similar cost; `collate` turns
    a length group into whatever `forward` takes (padded tensors, or the items themselves);
    `forward` returns one row per item: scores, a vector, or spans, as `output` says.
    """

    @property
    def settings(self) -> ModelSettings: ...
    @property
    def task(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def output(self) -> str: ...  # "scores", "vectors" or "spans": how the server packs the rows
    @property
    def labels(self) -> list[str]: ...
    @property
    def dim(self) -> int | None: ...
    @property
    def device(self) -> object: ...  # a torch.device or a name: the ping reply shows str() of it
    @property
    def dtype(self) -> str: ...
    @property
    def version(self) -> str: ...

    def tokenize(self, texts: list[str]) -> Sequence[Sized]: ...
    def collate(self, items: Any) -> Any: ...
    def forward(self, batch: Any) -> Any: ...
    def warm_up(self) -> None: ...
    def memory_bytes(self) -> int: ...
