"""The sampler's recorded inclusion probabilities are the real ones, caps included (by simulation)."""

from __future__ import annotations

import math
import random

from proxy.exchange import FindingRecord
from proxy.review.sampler import Candidate, Sampler, policy_thresholds
from proxy.review.settings import ReviewSettings


def settings(**kw: object) -> ReviewSettings:
    base: dict[str, object] = {"rate": 0.1, "rates": [{"tenants": ["t1"], "rate": 0.3}], "cap_per_window": 20,
                               "window_s": 100, "double_review_share": 0.0}
    base.update(kw)
    return ReviewSettings.model_validate(base)


def finding(score: float, action: str = "allow") -> FindingRecord:
    return FindingRecord("response", "tox", "toxic", score, action, "")


def stream(n: int, seed: int = 7) -> list[tuple[Candidate, float]]:
    """A fixed mix of every stratum, over two cap windows, with a burst of blocked items."""
    rng = random.Random(seed)
    items = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.3:
            c = Candidate("t0", "m", "/v1/chat/completions", "block", (finding(0.9, "block"),))
        elif kind < 0.4:
            c = Candidate("t0", "m", "/v1/chat/completions", "flag", (finding(0.7, "flag"),))
        elif kind < 0.5:
            c = Candidate("t0", "m", "/v1/chat/completions", "allow", (finding(0.45),))  # near 0.5
        else:
            c = Candidate(rng.choice(["t0", "t1"]), "m", "/v1/completions", "allow", ())
        items.append((c, 100.0 * i / n * 2))  # two windows of 100 s
    return items


def test_strata_and_rates() -> None:
    s = Sampler(settings(), threshold_for=policy_thresholds([("tox", "*", 0.5)]))
    assert s.stratum_of(Candidate("t", "m", "r", "block")) == "blocked"
    assert s.stratum_of(Candidate("t", "m", "r", "redact")) == "flagged"
    assert s.stratum_of(Candidate("t", "m", "r", "allow", (finding(0.42),))) == "near"
    assert s.stratum_of(Candidate("t", "m", "r", "allow", (finding(0.2),))) == "uniform"
    assert s.rate_of(Candidate("t1", "m", "r", "allow"), "uniform") == 0.3
    assert s.rate_of(Candidate("t9", "m", "r", "allow"), "uniform") == 0.1


def test_inclusion_frequencies_match_recorded_probabilities() -> None:
    items = stream(300)
    runs = 3000
    hits = [0] * len(items)
    recorded: list[float] | None = None
    for seed in range(runs):
        sampler = Sampler(settings(), rng=random.Random(seed))
        probs = []
        for i, (candidate, now) in enumerate(items):
            draw = sampler.draw(candidate, now)
            probs.append(draw.probability)
            hits[i] += draw.sampled
        if recorded is None:
            recorded = probs
        assert probs == recorded  # pi depends on the traffic only, never on earlier coin flips
    assert recorded is not None
    assert min(recorded) > 0 and any(p < 0.5 for p in recorded if p != 0.1 and p != 0.3)  # the cap did bite
    z = [(h / runs - p) / math.sqrt(p * (1 - p) / runs) for h, p in zip(hits, recorded, strict=True) if 0 < p < 1]
    worst = max(abs(v) for v in z)
    chi2 = sum(v * v for v in z)
    print(f"\ninclusion: {len(z)} items x {runs} runs, max |z| = {worst:.2f}, chi2/df = {chi2 / len(z):.3f}")
    assert worst < 4.5
    assert abs(chi2 / len(z) - 1) < 0.25  # the spread of the frequencies is what the probabilities say
    # Items that were always drawn (before the cap bit) were drawn every time.
    assert all(h == runs for h, p in zip(hits, recorded, strict=True) if p == 1.0)


def test_cap_bounds_a_flood() -> None:
    cap = 50
    flood = [(Candidate("t0", "m", "r", "block"), 10.0)] * 20_000
    counts = []
    for seed in range(40):
        sampler = Sampler(settings(cap_per_window=cap), rng=random.Random(seed))
        counts.append(sum(sampler.draw(c, now).sampled for c, now in flood))
    one = Sampler(settings(cap_per_window=cap))
    expected = sum(one.probability("blocked", 1.0, now) for _, now in flood)
    mean = sum(counts) / len(counts)
    print(f"\nflood of 20000 blocked, cap {cap}: expected {expected:.1f} drawn, mean {mean:.1f}, max {max(counts)}")
    assert cap < expected <= 2 * cap
    assert abs(mean - expected) < 4 * math.sqrt(expected / len(counts))
    # A new window starts fresh.
    sampler = Sampler(settings(cap_per_window=cap))
    for c, now in flood[:1000]:
        sampler.draw(c, now)
    assert sampler.probability("blocked", 1.0, 10.0) < 0.01
    assert sampler.probability("blocked", 1.0, 150.0) == 1.0


def test_counts_and_double_review() -> None:
    sampler = Sampler(settings(double_review_share=0.5, rate=1.0, cap_per_window=1000), rng=random.Random(1))
    draws = [sampler.draw(Candidate("t0", "m", "r", "allow"), 1.0) for _ in range(400)]
    assert 150 < sum(d.double for d in draws) < 250
    assert sampler.take_counts() == {("m", "uniform"): 400}
    assert sampler.take_counts() == {}
