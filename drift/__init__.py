"""Pure drift statistics over embedding windows; knows nothing of HTTP, models or storage.

`compare` runs every statistic of one window against a reference; `DriftMonitor` keeps the
per-stream reference and window and says when a window is due. Results are plain objects
that the caller routes to its sinks (the proxy: ClickHouse rows and Prometheus gauges).
"""

from drift.compare import Comparison, Sample, Statistic, compare
from drift.config import MonitorConfig, StatsConfig, WindowConfig
from drift.monitor import DriftMonitor, Reference, StreamKey, WindowJob, WindowResult

__all__ = [
    "Comparison",
    "DriftMonitor",
    "MonitorConfig",
    "Reference",
    "Sample",
    "Statistic",
    "StatsConfig",
    "StreamKey",
    "WindowConfig",
    "WindowJob",
    "WindowResult",
    "compare",
]
