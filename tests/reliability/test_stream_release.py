"""Early release and incremental scanning: however an answer is chunked, the client gets exactly what
the same answer sent whole would have become (issue 24).

The detectors run in-process (secret shapes and canaries, and a regex stand-in for PII that
declares the PII hold rule), so "the same answer sent whole" is exact: one scan of the whole text
through the same chain, engine and redactor. Chunkings: hypothesis's random cut points, every
single split point of a corpus, one character per chunk, and random cuts of the SSE bytes (inside
multi-byte characters too). Blocks: the stream ends blocked exactly when the whole answer is
blocked, and what it released before is a prefix of the redacted answer that stops short of the
blocking finding.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from detectors.base import Finding, Priority
from detectors.builtin_types import PatternsOptions
from detectors.holdback import hold_for, pii_tail
from detectors.patterns import PatternDetector
from detectors.redact import Operator, Redactor
from proxy.policy.chain import ChainEntry, DetectorChain
from proxy.policy.engine import Action, PolicyEngine, Scope, Verdict
from proxy.policy.metrics import PolicyMetrics
from proxy.policy.settings import PolicySettings, RuleSettings
from proxy.policy.stream import StreamEnforcer
from tests.support.regex_pii import RegexPII

CANARIES = ["zebra canary phrase", "kiwi-7f3a"]
VALUES = ["jane.doe@example.com", "4111 1111 1111 1111", "078-05-1120", "(555) 867-5309", "AKIAIOSFODNN7EXAMPLE",
          "ghp_" + "a1B2" * 9, "zebra canary phrase", "kiwi-7f3a", "-----BEGIN RSA PRIVATE KEY-----",
          "sk-proj-" + "Zz9_" * 6, "bob@mail.example.org"]
WORDS = ["the", "answer", "Sure.", "Jane", "Doe", "Ludwig", "van", "called", "at", "or", "café", "日本語", "🙂",
         "naïve", "über", "Straße", "card", "SSN:", "phone", "5309", "415", "and", "—", "(see", "below)", "e-mail",
         "zebra", "canary", "kiwi", "AKIA", "ghp_", "sk-", "@", "x.com", "-----BEGIN",
         "ja\u200bne@exam\u00adple.com", "４１１１ １１１１ １１１１ １１１１", "AKIАIOSFODNN7EXAMPLE",
         "zebra\u200b canary"]
SEPARATORS = [" ", " ", " ", "\n", "\r\n", ", ", ". ", "\n\n", "\t"]
CORPUS = ("Sure. You can reach Jane Doe at jane.doe@example.com or call (555) 867-5309 after nine — café "
          "hours 🙂. Her card is 4111 1111 1111 1111 and the SSN on file is 078-05-1120.\r\nThe deploy "
          "key AKIAIOSFODNN7EXAMPLE was rotated; zebra canary phrase must never show. 日本語のテキスト "
          "and naïve Straße, über alles. Write to bob@mail.example.org, then stop.")


class HeldPII(RegexPII):
    """The regex PII stand-in, declaring the PII hold rule as the scanner-backed detector does."""

    def holdback(self, text: str) -> int:
        return pii_tail(text)


class Guard:
    """One chain, engine and redactor per case; `whole` and `stream` must agree."""

    def __init__(self, secrets_action: str = "redact", *, declared: bool = True, window: int = 64) -> None:
        pii = HeldPII() if declared else RegexPII()
        secrets = PatternDetector("secrets", frozenset({"response"}), canaries=CANARIES)
        self.detectors: list[Any] = [pii, secrets]
        self.chain = DetectorChain([ChainEntry(pii, PatternsOptions(name="pii", type="patterns")),
                                    ChainEntry(secrets, PatternsOptions(name="secrets", type="patterns"))],
                                   PolicyMetrics(CollectorRegistry()))
        self.engine = PolicyEngine(PolicySettings(rules=[RuleSettings(detector="pii", action="redact"),
                                                         RuleSettings(detector="secrets", action=secrets_action)]))
        self.declared = declared
        self.window = window

    async def verdict(self, text: str) -> Verdict:
        return self.engine.decide(await self.chain.scan([text], "response"), "response", Scope())

    def redactor(self) -> Redactor:
        return Redactor({"DEFAULT": Operator(type="replace", numbered=True)})

    async def whole(self, text: str) -> tuple[str, bool]:
        """The answer sent whole: its redacted text, or (when blocked) the redacted text before the block."""
        verdict = await self.verdict(text)
        if verdict.action != Action.BLOCK:
            return self.redactor().redact(text, verdict.redactions(0)), False
        first = min((d.finding.start or 0) for d in verdict.decisions if d.action == Action.BLOCK)
        before = [f for f in verdict.redactions(0) if (f.end or 0) <= first]
        return self.redactor().redact(text[:first], before), True

    async def stream(self, pieces: list[str], byte_cuts: list[int] | None = None) -> tuple[str, bool]:
        holdback = (lambda t: hold_for(self.detectors, t)) if self.declared else None
        enforcer = StreamEnforcer(self.verdict, lambda v: None, self.window, self.redactor(), holdback=holdback)
        wire = b"".join(sse(pieces))
        chunks = sse(pieces) if byte_cuts is None else split(wire, byte_cuts)
        out = b"".join([await enforcer.feed(c) for c in chunks]) + await enforcer.finish()
        return read(out)


def sse(pieces: list[str]) -> list[bytes]:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    events = [{**base, "choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return [f"data: {json.dumps(e, ensure_ascii=False)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def cut(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [p for p in (text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)) if p]


def read(stream: bytes) -> tuple[str, bool]:
    text, blocked = "", False
    for event in stream.decode().split("\n\n"):
        data = event.removeprefix("data: ")
        if not data or data == "[DONE]":
            continue
        for choice in json.loads(data)["choices"]:
            text += choice.get("delta", {}).get("content") or ""
            blocked = blocked or choice.get("finish_reason") == "content_filter"
    return text, blocked


def agree(whole: tuple[str, bool], streamed: tuple[str, bool]) -> None:
    (expected, whole_blocked), (got, blocked) = whole, streamed
    assert blocked == whole_blocked
    if blocked:
        assert expected.startswith(got), (expected, got)
    else:
        assert got == expected


answers = st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(VALUES), st.text(max_size=6)), min_size=1,
                   max_size=30).flatmap(
    lambda words: st.lists(st.sampled_from(SEPARATORS), min_size=len(words), max_size=len(words)).map(
        lambda seps: "".join(w + s for w, s in zip(words, seps, strict=True))))
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(answers, st.lists(st.integers(min_value=0), max_size=40), st.sampled_from(["redact", "block"]))
def test_random_answers_and_chunkings_stream_as_the_whole_answer(text: str, cuts: list[int], action: str) -> None:
    guard = Guard(action)

    async def check() -> None:
        agree(await guard.whole(text), await guard.stream(cut(text, cuts)))

    asyncio.run(check())


@PROPERTY
@given(st.lists(st.integers(min_value=0), max_size=60), st.sampled_from(["redact", "block"]), st.booleans())
def test_random_byte_cuts_of_the_wire_stream_as_the_whole_answer(cuts: list[int], action: str, declared: bool) -> None:
    guard = Guard(action, declared=declared)

    async def check() -> None:
        agree(await guard.whole(CORPUS), await guard.stream(cut(CORPUS, cuts[:20]), byte_cuts=cuts))

    asyncio.run(check())


def test_every_split_point_and_one_character_chunks() -> None:
    async def check() -> None:
        for action in ("redact", "block"):
            for declared in (True, False):
                guard = Guard(action, declared=declared)
                whole = await guard.whole(CORPUS)
                agree(whole, await guard.stream(list(CORPUS)))
                for at in range(1, len(CORPUS)):
                    agree(whole, await guard.stream([CORPUS[:at], CORPUS[at:]]))

    asyncio.run(check())


def test_release_is_early_and_each_character_is_scanned_about_once() -> None:
    """Five characters a chunk: text leaves within a word of arriving, and the scans read little
    more than the answer itself (new text, the held tail, a few words of context)."""
    scanned: list[str] = []
    guard = Guard("redact")

    async def counting(text: str) -> Verdict:
        scanned.append(text)
        return await guard.verdict(text)

    async def check() -> None:
        enforcer = StreamEnforcer(counting, lambda v: None, 64, guard.redactor(),
                                  holdback=lambda t: hold_for(guard.detectors, t))
        pieces = [CORPUS[i:i + 5] for i in range(0, len(CORPUS), 5)]
        first_at = None
        for number, chunk in enumerate(sse(pieces)):
            if read(await enforcer.feed(chunk))[0] and first_at is None:
                first_at = number
        await enforcer.finish()
        assert first_at is not None and first_at <= 2  # "Sure. " is out with the second chunk
        assert sum(map(len, scanned)) < 2.5 * len(CORPUS)  # the fixed window read each character ~5 times

    asyncio.run(check())


class Slow(RegexPII):
    def __init__(self, delay_s: float) -> None:
        super().__init__()
        self.delay_s = delay_s

    def holdback(self, text: str) -> int:
        return pii_tail(text)

    async def detect(self, texts: list[str], priority: Priority = "request") -> list[list[Finding]]:
        await asyncio.sleep(self.delay_s)
        return await super().detect(texts, priority)


def test_a_stream_held_past_the_longest_hold_gets_on_error() -> None:
    async def run(fail_closed: bool) -> tuple[str, bool, bool]:
        slow = Slow(0.2)
        chain = DetectorChain([ChainEntry(slow, PatternsOptions(name="pii", type="patterns", timeout_s=5))],
                              PolicyMetrics(CollectorRegistry()))
        engine = PolicyEngine(PolicySettings(rules=[RuleSettings(detector="pii", action="redact")]))

        async def scan(text: str) -> Verdict:
            return engine.decide(await chain.scan([text], "response"), "response", Scope())

        recorded: list[Verdict] = []
        enforcer = StreamEnforcer(scan, recorded.append, 64, Redactor(), holdback=pii_tail, max_hold_s=0.05,
                                  fail_closed=fail_closed)
        out = b"".join([await enforcer.feed(c) for c in sse(["plain words here ", "and more "])])
        if not enforcer.stopped:
            out += await enforcer.finish()
        text, blocked = read(out)
        return text, blocked, any(d.finding.label == "detector_unavailable" for v in recorded for d in v.decisions)

    closed = asyncio.run(run(True))
    assert closed == ("", True, True)
    opened = asyncio.run(run(False))
    assert opened[0] == "plain words here and more " and not opened[1]
