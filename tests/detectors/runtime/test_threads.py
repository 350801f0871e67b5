"""A model's own torch threads hold on its device thread whatever another model's thread sets
(issue 32: the BiLSTM beside PII ran on PII's two threads, at ~4x its CPU per text)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from detectors.runtime.batcher import _set_threads
from detectors.runtime.settings import ModelSettings


def test_each_device_thread_keeps_its_own_count() -> None:
    before = torch.get_num_threads()
    one = ThreadPoolExecutor(1, initializer=_set_threads, initargs=(1,))
    two = ThreadPoolExecutor(1, initializer=_set_threads, initargs=(2,))
    try:
        one.submit(lambda: None).result()
        two.submit(lambda: None).result()  # set after the first: the last count stored anywhere
        assert one.submit(torch.get_num_threads).result() == 1
        assert two.submit(torch.get_num_threads).result() == 2
    finally:
        one.shutdown()
        two.shutdown()
        torch.set_num_threads(before)


def test_the_bilstm_runs_on_one_thread_unless_told() -> None:
    assert ModelSettings(task="t", kind="toxic_bilstm").forward_threads(2) == 1
    assert ModelSettings(task="t", kind="toxic_bilstm", torch_threads=3).forward_threads(2) == 3
    assert ModelSettings(task="t", kind="classifier", path="x").forward_threads(2) == 2
