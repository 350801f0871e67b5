"""Drift wiring: the observer that samples traffic, the runner that embeds and evaluates it, the sinks.

The statistics themselves live in the top-level `drift` package; this package only connects
them to the proxy's scanner, telemetry writer and Prometheus registry (`wiring.drift_ctx`).
Kept empty so `proxy.settings` can import `driftwatch.settings` without pulling the rest in.
"""
