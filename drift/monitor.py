"""Per-stream reference and current window, and when a window is due; the alert state across windows.

The monitor is split so its owner can keep the heavy part off its event loop: `add` and `due`
are cheap (copy rows into a ring, hand back the windows that closed), `compare_job` is the
numpy work and touches nothing shared (run it in a thread), and `record` folds its outcome
into the stream's alert state (back on the owner's thread, in window order).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from drift.compare import Comparison, Sample, compare
from drift.config import MonitorConfig
from drift.window import Reservoir, Ring

Array = np.ndarray[Any, Any]


class StreamKey(NamedTuple):
    model: str
    stream: str


@dataclass(frozen=True)
class Reference:
    id: str
    sample: Sample


@dataclass(frozen=True)
class WindowJob:
    key: StreamKey
    index: int  # windows evaluated on this stream so far
    reference: Reference
    current: Sample
    window_start: float
    window_end: float
    samples: Array  # the reservoir rows for offline analysis


@dataclass(frozen=True)
class WindowResult:
    job: WindowJob
    comparison: Comparison
    alert: bool  # drift has persisted (alert_after windows in a row) and has not yet cleared
    alert_changed: bool


@dataclass
class _Stream:
    ring: Ring
    reservoir: Reservoir
    reference: Reference | None = None
    building: Ring | None = None  # the first N rows, while they become the reference
    since_eval: int = 0
    last_eval: float | None = None
    windows: int = 0
    drifted_run: int = 0
    clean_run: int = 0
    alert: bool = False


class DriftMonitor:
    def __init__(self, config: MonitorConfig, scalar_names: tuple[str, ...] = ()) -> None:
        self.config = config
        self.scalar_names = scalar_names
        self._streams: dict[StreamKey, _Stream] = {}
        self._pinned: dict[StreamKey, Reference] = {}
        self.dropped_streams = 0  # rows refused because max_streams were already tracked
        self.skipped_windows = 0  # time-closed windows under min_size

    def pin(self, key: StreamKey, reference: Reference) -> None:
        """A fixed reference for `key` (from a file or a stored time range) instead of its first N rows."""
        self._pinned[key] = reference
        if key in self._streams:
            self._streams[key].reference, self._streams[key].building = reference, None

    def streams(self) -> dict[StreamKey, bool]:
        """Each tracked stream and whether its alert is up."""
        return {k: s.alert for k, s in self._streams.items()}

    def _stream(self, key: StreamKey, dim: int) -> _Stream | None:
        stream = self._streams.get(key)
        if stream is not None:
            return stream
        if len(self._streams) >= self.config.max_streams:
            return None
        seed = zlib.crc32(f"{self.config.tests.seed}|{key.model}|{key.stream}".encode())
        ring = Ring(self.config.window.size, dim, self.scalar_names)
        stream = _Stream(ring, Reservoir(self.config.reservoir_size, np.random.default_rng(seed)))
        stream.reference = self._pinned.get(key)
        if stream.reference is None:
            stream.building = Ring(self.config.reference_size, dim, self.scalar_names)
        self._streams[key] = stream
        return stream

    def add(self, key: StreamKey, rows: Array, now: float, scalars: dict[str, Array] | None = None) -> list[WindowJob]:
        """Takes rows (n × dim) that arrived at `now`; returns the windows this closed."""
        rows = np.asarray(rows, dtype=np.float32)
        stream = self._stream(key, rows.shape[1])
        if stream is None:
            self.dropped_streams += len(rows)
            return []
        scalars = scalars or {}
        if stream.building is not None:
            room = stream.building.capacity - len(stream.building)
            stream.building.append(rows[:room], now, {k: np.asarray(v)[:room] for k, v in scalars.items()})
            rows, scalars = rows[room:], {k: np.asarray(v)[room:] for k, v in scalars.items()}
            if len(stream.building) == stream.building.capacity:
                stream.reference = Reference(f"first:{stream.building.oldest():.3f}", stream.building.snapshot())
                stream.building = None
        jobs = []
        window = self.config.window
        while len(rows):
            # A tumbling window takes rows up to its size and closes; the rest open the next one.
            take = window.size - len(stream.ring) if window.kind == "tumbling" else len(rows)
            chunk, rows = rows[:take], rows[take:]
            part = {k: np.asarray(v)[:take] for k, v in scalars.items()}
            scalars = {k: np.asarray(v)[take:] for k, v in scalars.items()}
            if stream.last_eval is None:
                stream.last_eval = now
            stream.ring.append(chunk, now, part)
            stream.reservoir.offer(chunk)
            stream.since_eval += len(chunk)
            if window.max_age_s is not None and window.kind == "sliding":
                stream.ring.evict_before(now - window.max_age_s)
            full = len(stream.ring) >= window.size if window.kind == "tumbling" else (
                stream.since_eval >= window.step and len(stream.ring) >= window.min_size)
            if full:
                jobs.append(self._close(key, stream, now))
        return jobs

    def due(self, now: float) -> list[WindowJob]:
        """Windows that time closed: tumbling ones `max_age_s` after they opened, sliding ones with new
        rows and no evaluation for `max_age_s`."""
        window = self.config.window
        if window.max_age_s is None:
            return []
        jobs = []
        for key, stream in self._streams.items():
            if stream.reference is None or not stream.since_eval:
                continue
            if window.kind == "sliding":
                stream.ring.evict_before(now - window.max_age_s)
            opened = stream.ring.oldest() if window.kind == "tumbling" else stream.last_eval
            if opened is None or now - opened < window.max_age_s:
                continue
            if len(stream.ring) >= window.min_size:
                jobs.append(self._close(key, stream, now))
            elif window.kind == "tumbling":
                self.skipped_windows += 1
                stream.ring.clear()
                stream.reservoir.take()
                stream.since_eval = 0
        return jobs

    def _close(self, key: StreamKey, stream: _Stream, now: float) -> WindowJob:
        assert stream.reference is not None
        start = stream.ring.oldest() or now
        job = WindowJob(key, stream.windows, stream.reference, stream.ring.snapshot(), start, now,
                        stream.reservoir.take())
        stream.windows += 1
        stream.since_eval = 0
        stream.last_eval = now
        if self.config.window.kind == "tumbling":
            stream.ring.clear()
        return job

    def compare_job(self, job: WindowJob) -> Comparison:
        """The statistics of one window; pure and seeded by stream and window number. Safe off-thread."""
        seed = zlib.crc32(f"{self.config.tests.seed}|{job.key.model}|{job.key.stream}|{job.index}".encode())
        return compare(job.reference.sample, job.current, self.config.tests, seed=seed)

    def record(self, job: WindowJob, comparison: Comparison) -> WindowResult:
        """Folds a window's verdict into its stream's alert state (hysteresis: alert_after / clear_after)."""
        stream = self._streams.get(job.key)
        if stream is None:
            return WindowResult(job, comparison, alert=False, alert_changed=False)
        before = stream.alert
        if comparison.drifted:
            stream.drifted_run, stream.clean_run = stream.drifted_run + 1, 0
        else:
            stream.drifted_run, stream.clean_run = 0, stream.clean_run + 1
        if not stream.alert and stream.drifted_run >= self.config.alert_after:
            stream.alert = True
        elif stream.alert and stream.clean_run >= self.config.clear_after:
            stream.alert = False
        return WindowResult(job, comparison, alert=stream.alert, alert_changed=stream.alert != before)

    def evaluate(self, job: WindowJob) -> WindowResult:
        """compare_job then record, for callers with no event loop to protect."""
        return self.record(job, self.compare_job(job))
