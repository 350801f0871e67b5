"""Benchmarks, one module each, run from the repository root as `python -m bench.NAME`.

A package rather than loose scripts so that the benches share one harness (`bench.harness`)
by import, without editing `sys.path`, and so that `bench/detectors.py` and `bench/drift.py`
cannot shadow the `detectors` and `drift` packages they measure.
"""
