"""The findings cache: a scanned text answered next time, least recently used out, never across model versions."""

from __future__ import annotations

import asyncio

from detectors.base import Finding
from detectors.scan_cache import FindingsCache, digest, one_off


def found(label: str) -> list[Finding]:
    return [Finding("pii", label, 0.9, 0, 3)]


def scanned(cache: FindingsCache, version: str, texts: list[str]) -> list[str]:
    """One detector call: what had to be sent to the scanner (the findings stored after)."""
    keys, rows = cache.lookup(version, texts)
    missing = [i for i, row in enumerate(rows) if row is None]
    cache.store(version, [keys[i] for i in missing], [found(texts[i]) for i in missing])
    return [texts[i] for i in missing]


def test_a_scanned_text_is_answered_the_next_time() -> None:
    counts: list[tuple[int, int]] = []
    cache = FindingsCache(8, on_lookup=lambda hits, misses: counts.append((hits, misses)))
    assert scanned(cache, "v1", ["system", "hello"]) == ["system", "hello"]
    assert scanned(cache, "v1", ["system", "hello", "again"]) == ["again"]
    keys, rows = cache.lookup("v1", ["system", "again", "new"])
    assert rows == [found("system"), found("again"), None]
    assert counts == [(0, 2), (2, 1), (2, 1)]
    assert keys[0] == digest("system") and len(keys[0]) == 16  # a digest, not the text


def test_least_recently_used_leaves_first() -> None:
    cache = FindingsCache(2)
    scanned(cache, "v1", ["a", "b"])
    assert cache.lookup("v1", ["a"])[1] == [found("a")]  # "a" used last
    scanned(cache, "v1", ["c"])
    assert cache.lookup("v1", ["a", "b", "c"])[1] == [found("a"), None, found("c")]


def test_another_model_version_answers_nothing_and_late_findings_are_dropped() -> None:
    cache = FindingsCache(8)
    scanned(cache, "v1", ["a"])
    keys, _ = cache.lookup("v1", ["b"])
    assert cache.lookup("v2", ["a"])[1] == [None]
    cache.store("v1", keys, [found("b")])  # scanned by v1, landed after v2 answered: not kept
    assert len(cache) == 0


def test_a_lone_surrogate_is_a_text_like_any_other() -> None:
    cache = FindingsCache(4)
    assert scanned(cache, "v1", ["x\ud800", "x\ud801"]) == ["x\ud800", "x\ud801"]
    assert cache.lookup("v1", ["x\ud800", "x\ud801"])[1] == [found("x\ud800"), found("x\ud801")]


async def test_scans_made_under_one_off_are_not_kept_even_in_tasks_they_start() -> None:
    cache = FindingsCache(8)

    async def detector_task(text: str) -> list[str]:  # the chain runs each detector as its own task
        return scanned(cache, "v1", [text])

    with one_off():
        await asyncio.gather(detector_task("window 1"), detector_task("window 2"))
        assert scanned(cache, "v1", ["window 1"]) == ["window 1"]
    assert len(cache) == 0
    assert scanned(cache, "v1", ["the whole answer"]) == ["the whole answer"] and len(cache) == 1
