"""The monitor: first-N or pinned references, tumbling and sliding windows by count and time, alerts."""

from __future__ import annotations

import numpy as np

from drift.compare import Sample
from drift.config import MonitorConfig, StatsConfig, WindowConfig
from drift.monitor import DriftMonitor, Reference, StreamKey

KEY = StreamKey("m", "chat/prompt")
FAST = StatsConfig(permutations=50, classifier=False, ks=False, min_votes=1, votes=("mmd",))


def _rows(n: int, shift: float = 0.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 8)).astype(np.float32) + shift


def test_first_rows_become_the_reference_then_tumbling_windows_close_by_count() -> None:
    monitor = DriftMonitor(MonitorConfig(tests=FAST, window=WindowConfig(size=40, min_size=10), reference_size=50,
                                         reservoir_size=5))
    assert monitor.add(KEY, _rows(30, seed=1), now=1.0) == []
    jobs = monitor.add(KEY, _rows(60, seed=2), now=2.0)  # 20 finish the reference, 40 fill a window
    assert len(jobs) == 1
    job = jobs[0]
    assert len(job.reference.sample) == 50 and job.reference.id == "first:1.000"
    assert len(job.current) == 40 and job.samples.shape == (5, 8) and job.index == 0
    assert monitor.add(KEY, _rows(39, seed=3), now=3.0) == []
    assert len(monitor.add(KEY, _rows(1, seed=4), now=3.5)) == 1


def test_drift_raises_the_alert_after_a_run_and_clears_after_clean_windows() -> None:
    monitor = DriftMonitor(MonitorConfig(tests=FAST, window=WindowConfig(size=60), reference_size=60,
                                         alert_after=2, clear_after=2))
    monitor.add(KEY, _rows(60, seed=0), now=0.0)
    states = []
    for i, shift in enumerate([0.0, 1.0, 1.0, 1.0, 0.0, 0.0]):
        (job,) = monitor.add(KEY, _rows(60, shift, seed=10 + i), now=float(i + 1))
        result = monitor.evaluate(job)
        states.append((result.comparison.drifted, result.alert, result.alert_changed))
    assert [s[0] for s in states] == [False, True, True, True, False, False]
    assert [s[1] for s in states] == [False, False, True, True, True, False]
    assert monitor.streams() == {KEY: False}


def test_pinned_reference_and_time_closed_windows() -> None:
    config = MonitorConfig(tests=FAST, window=WindowConfig(size=1000, min_size=20, max_age_s=10.0))
    monitor = DriftMonitor(config)
    monitor.pin(KEY, Reference("file:ref.npz", Sample(_rows(100, seed=5))))
    assert monitor.add(KEY, _rows(25, seed=6), now=100.0) == []
    assert monitor.due(105.0) == []
    (job,) = monitor.due(110.0)
    assert job.reference.id == "file:ref.npz" and len(job.current) == 25
    assert (job.window_start, job.window_end) == (100.0, 110.0)
    monitor.add(KEY, _rows(5, seed=7), now=111.0)  # too few when its time is up: skipped, not evaluated
    assert monitor.due(121.0) == [] and monitor.skipped_windows == 1


def test_sliding_windows_keep_the_last_rows_and_step() -> None:
    config = MonitorConfig(tests=FAST, window=WindowConfig(kind="sliding", size=30, min_size=20, step=10),
                           reference_size=20)
    monitor = DriftMonitor(config)
    monitor.add(KEY, _rows(20), now=0.0)
    assert monitor.add(KEY, _rows(10, seed=1), now=1.0) == []  # a step, but under min_size
    (job,) = monitor.add(KEY, _rows(10, seed=2), now=2.0)
    assert len(job.current) == 20
    monitor.add(KEY, _rows(5, seed=3), now=3.0)
    (job,) = monitor.add(KEY, _rows(5, seed=4), now=4.0)
    assert len(job.current) == 30  # capped at size: the oldest rows left
    np.testing.assert_array_equal(job.current.embeddings[-5:], _rows(5, seed=4))


def test_streams_are_capped_and_scalars_ride_along() -> None:
    monitor = DriftMonitor(MonitorConfig(tests=FAST, window=WindowConfig(size=20), reference_size=20, max_streams=1),
                           scalar_names=("prompt_chars",))
    monitor.add(KEY, _rows(20), now=0.0, scalars={"prompt_chars": np.full(20, 10.0)})
    (job,) = monitor.add(KEY, _rows(20, 2.0, seed=1), now=1.0, scalars={"prompt_chars": np.full(20, 99.0)})
    assert monitor.add(StreamKey("other", "chat/prompt"), _rows(5), now=1.0) == []
    assert monitor.dropped_streams == 5
    result = monitor.evaluate(job)
    psi = next(s for s in result.comparison.statistics if s.name == "psi:prompt_chars")
    assert psi.drifted and psi.attrs["current_mean"] == "99"


def test_a_batch_across_a_window_boundary_is_split_not_lost() -> None:
    monitor = DriftMonitor(MonitorConfig(tests=FAST, window=WindowConfig(size=30, min_size=10), reference_size=30))
    rows = _rows(100, seed=9)
    jobs = [job for start in range(0, 100, 16) for job in monitor.add(KEY, rows[start:start + 16], now=1.0)]
    assert len(jobs) == 2
    np.testing.assert_array_equal(jobs[0].current.embeddings, rows[30:60])
    np.testing.assert_array_equal(jobs[1].current.embeddings, rows[60:90])
