"""The light families must read, at scrape time, exactly as prometheus_client's own would."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from proxy.lightmetrics import LightCounter, LightHistogram

BUCKETS = (0.001, 0.01, 0.1, 1, 10)
# Values on the bounds, between them, below the first and above the last (+Inf only).
VALUES = (0.0, 0.0005, 0.001, 0.0011, 0.01, 0.05, 0.1, 1, 1.5, 10, 11, 1e9)


def _exposition(registry: CollectorRegistry) -> list[str]:
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created" not in line]


def test_histogram_and_counter_expose_what_prometheus_client_does() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    h1 = Histogram("t_seconds", "Help text.", ["route"], buckets=BUCKETS, registry=theirs)
    c1 = Counter("t_requests", "Counted.", ["route", "status"], registry=theirs)
    h2 = LightHistogram("t_seconds", "Help text.", ["route"], buckets=BUCKETS, registry=ours)
    c2 = LightCounter("t_requests", "Counted.", ["route", "status"], registry=ours)
    for i, value in enumerate(VALUES):
        route = "/a" if i % 2 else "/b"
        h1.labels(route).observe(value)
        h2.labels(route).observe(value)
        c1.labels(route, "200").inc()
        c2.labels(route, "200").inc()
    c1.labels("/a", "500").inc(3)
    c2.labels("/a", "500").inc(3)
    assert _exposition(ours) == _exposition(theirs)
    # /b saw 0.0, 0.001, 0.01, 0.1, 1.5 and 11: `le` is inclusive, so the bound itself counts.
    assert ours.get_sample_value("t_seconds_bucket", {"route": "/b", "le": "0.001"}) == 2.0
    assert ours.get_sample_value("t_seconds_bucket", {"route": "/b", "le": "+Inf"}) == 6.0
    assert ours.get_sample_value("t_requests_total", {"route": "/a", "status": "500"}) == 3.0


def test_labels_are_checked_and_keyed_as_strings() -> None:
    registry = CollectorRegistry()
    counter = LightCounter("t_answers", "By status.", ["status"], registry=registry)
    with pytest.raises(ValueError, match="takes labels"):
        counter.labels("200", "extra")
    counter.labels(200).inc()  # type: ignore[arg-type]
    counter.labels("200").inc()
    assert registry.get_sample_value("t_answers_total", {"status": "200"}) == 2.0
    with pytest.raises(ValueError, match="only go up"):
        counter.labels("200").inc(-1)


def test_bad_buckets_and_clashing_names_are_refused() -> None:
    registry = CollectorRegistry()
    with pytest.raises(ValueError, match="strictly increasing"):
        LightHistogram("t_a", "x", [], buckets=(1, 0.5), registry=registry)
    with pytest.raises(ValueError, match="strictly increasing"):
        LightHistogram("t_b", "x", [], buckets=(1, float("inf")), registry=registry)
    LightCounter("t_c", "x", [], registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        Counter("t_c", "x", registry=registry)


def test_exemplars_are_kept_per_bucket_and_shown_in_openmetrics() -> None:
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    registry = CollectorRegistry()
    histogram = LightHistogram("t_seconds", "Help text.", ["route"], buckets=BUCKETS, registry=registry)
    child = histogram.labels("/a")
    child.observe(0.005)
    child.observe_exemplar(0.05, "a" * 32)
    child.observe_exemplar(0.07, "b" * 32)  # the same bucket: the latest wins
    text = openmetrics(registry).decode()  # type: ignore[no-untyped-call]
    assert 't_seconds_bucket{le="0.1",route="/a"} 3.0 # {trace_id="' + "b" * 32 + '"} 0.07' in text
    assert registry.get_sample_value("t_seconds_count", {"route": "/a"}) == 3.0
    assert "trace_id" not in generate_latest(registry).decode()  # the text format has no exemplars
