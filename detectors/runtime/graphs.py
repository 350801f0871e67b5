"""Static-shape forward passes for CUDA: one captured CUDA graph per (rows, width) bucket, replayed.

An eager bert-base forward holds the GIL for ~7.5 ms of host Python per batch (measured on an
H200), more than half of the batch's device time: the device idles while Python launches kernels.
A CUDA graph replays every kernel of the forward (model, head, pooling) with one call. Graphs need
fixed shapes and fixed memory, so a batch is padded up to its bucket (rows and width each rounded
up to a power of two, capped at max_batch and max_length) and copied into that bucket's pinned
host buffers, which stay the same between batches; the copies and the replay are queued without
a host sync, and the one sync is the wait for the result at the end. transformers skips its
"is any token padded?" check (a host sync) while a stream is capturing, so the captured attention
path is the masked one, valid for every batch.

Only CUDA uses it (`ModelSettings.cuda_graphs`); on the CPU the same padded static-shape step can
run eagerly (`capture=False`), which is how the tests check that padding to a bucket changes no
score.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

Step = Callable[[dict[str, torch.Tensor]], torch.Tensor]


def bucket(size: int, cap: int, least: int = 8) -> int:
    """The smallest power of two (at least `least`) holding `size`, but never over `cap`."""
    return min(cap, max(least, 1 << max(size - 1, 0).bit_length()))


@dataclass
class _Slot:
    """One bucket's fixed memory: pinned host inputs and output, device inputs, and its graph."""

    host: dict[str, torch.Tensor]
    device: dict[str, torch.Tensor]
    host_out: torch.Tensor
    out: torch.Tensor | None = None
    graph: Any = None
    done: Any = None


class StaticForward:
    """Runs `step` on (rows, width)-bucketed inputs: captured and replayed on CUDA, eager elsewhere."""

    def __init__(self, step: Step, device: torch.device, max_batch: int, max_length: int, pad_id: int,
                 token_types: bool, capture: bool) -> None:
        self.step = step
        self.device = device
        self.max_batch = max_batch
        self.max_length = max_length
        self.pad_id = pad_id
        self.token_types = token_types
        self.capture = capture and device.type == "cuda"
        self._slots: dict[tuple[int, int], _Slot] = {}
        self._pool: Any = torch.cuda.graph_pool_handle() if self.capture else None  # one pool for all graphs

    def __call__(self, input_ids: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        rows, width = input_ids.shape
        slot = self._slot(bucket(rows, self.max_batch), bucket(width, self.max_length))
        ids, attention = slot.host["input_ids"].numpy(), slot.host["attention_mask"].numpy()
        ids.fill(self.pad_id)
        attention.fill(0)
        attention[rows:, 0] = 1  # padding rows attend to one token: no all-masked softmax anywhere
        ids[:rows, :width] = input_ids
        attention[:rows, :width] = mask
        if self.capture:
            for name, tensor in slot.host.items():
                slot.device[name].copy_(tensor, non_blocking=True)
            slot.graph.replay()
            assert slot.out is not None
            slot.host_out.copy_(slot.out, non_blocking=True)
            slot.done.record()
            slot.done.synchronize()  # the one host sync per batch: its result
        else:
            with torch.inference_mode():
                slot.host_out.copy_(self.step(slot.host))
        return np.array(slot.host_out[:rows].numpy())  # a copy: the buffer is the next batch's

    def warm_up(self) -> None:
        """Capture every bucket now, so no request pays a capture (tens of ms each)."""
        rows = sorted({bucket(n, self.max_batch) for n in range(1, self.max_batch + 1)})
        widths = sorted({bucket(n, self.max_length) for n in range(1, self.max_length + 1)})
        for r in rows:
            for w in widths:
                self._slot(r, w)

    def _slot(self, rows: int, width: int) -> _Slot:
        slot = self._slots.get((rows, width))
        if slot is not None:
            return slot
        pin = self.capture
        host = {"input_ids": torch.zeros((rows, width), dtype=torch.int64, pin_memory=pin),
                "attention_mask": torch.zeros((rows, width), dtype=torch.int64, pin_memory=pin)}
        host["attention_mask"][:, 0] = 1
        if self.token_types:
            host["token_type_ids"] = torch.zeros((rows, width), dtype=torch.int64, pin_memory=pin)
        with torch.inference_mode():
            probe = self.step({k: v.to(self.device) for k, v in host.items()})
        slot = _Slot(host=host, device={}, host_out=torch.empty(tuple(probe.shape), dtype=torch.float32,
                                                               pin_memory=pin))
        if self.capture:
            slot.device = {k: v.to(self.device) for k, v in host.items()}
            side = torch.cuda.Stream(self.device)  # type: ignore[no-untyped-call]
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(2):  # CUDA's advice: a few eager runs on a side stream before capture
                    self.step(slot.device)
            torch.cuda.current_stream(self.device).wait_stream(side)
            slot.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(slot.graph, pool=self._pool), torch.inference_mode():
                slot.out = self.step(slot.device)
            slot.done = torch.cuda.Event()  # type: ignore[no-untyped-call]
        self._slots[(rows, width)] = slot
        return slot
