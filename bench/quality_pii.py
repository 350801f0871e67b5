"""PII detection quality on a set nobody on the project wrote: presidio-evaluator's sentence generator.

presidio-evaluator (presidio's own evaluation framework) fills its bundled templates (support
chats, addresses, letters, news sentences) with Faker values and a bundled table of fake people
from many countries, so names, cities, street addresses and phone numbers come in many national
forms. Its labels are the ground truth here; the templates were never read to write a recognizer.

Seeds: TUNE_SEED is the set the recognizers were developed against; HELD_OUT_SEED (the default)
is the one the published figures come from. An independent set (another seed, another
generator) is the real check, so the recognizers are general shapes, never template phrases.

Scoring, span level, characters that are letters or digits only (spaces and punctuation at a
span's edges decide nothing):
  * a true value is *found* when predictions of its type cover at least half of it;
  * a prediction is *correct* when true values of its type cover at least half of it;
  * a true value is *fully masked* when predictions of any type cover all of it (what a
    redaction policy needs: the label does not matter, every character does);
  * truth types map to Warden's entities (TRUTH_TYPES): the generator's GPE (cities,
    countries), STREET_ADDRESS and ZIP_CODE are all LOCATION (Warden's street-address
    recognizer reports LOCATION); "street addresses" is the STREET_ADDRESS subset alone;
  * types Warden does not report by default (ORGANIZATION, DATE_TIME, TITLE, NRP, AGE,
    DOMAIN_NAME, US_DRIVER_LICENSE) are out of scope: no recall, and a prediction on one of
    them counts as a false positive like any other.
  * overall: micro-averaged over the in-scope types, every prediction counted for precision.

Both sides run on the same texts in the same process: Warden's default PII task (`kind: pii`
with no options, as `warden up` and examples/warden.yaml run it) and stock presidio
(`AnalyzerEngine` on the same spaCy model through `NlpEngineProvider`, its default registry,
the same entity list), whose scores are cut at Warden's per-entity thresholds (a cut at 0 is
printed too). Speed is process CPU time per text: presidio per call, Warden per call and
Warden batched (as the scanner runs it).

    .venv/bin/python -m bench.quality_pii                      # held-out seed, 1000 sentences (~2 min)
    .venv/bin/python -m bench.quality_pii --seed 3 -n 300      # the tuning seed, a short run
    .venv/bin/python -m bench.quality_pii --misses 40          # print Warden's misses and false positives

Needs presidio-evaluator: `pip install --no-deps presidio-evaluator==0.3.2` (`make bench-deps`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import re
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import RESULTS as RESULTS_DIR
from bench.harness import machine

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")  # before presidio: no suffix-list download
RESULTS = RESULTS_DIR / "quality_pii.json"
TUNE_SEED = 3
HELD_OUT_SEED = 71
LOWER_CASE_RATIO = 0.05  # presidio-evaluator's own examples use 5% lower-cased names
SPEED_TARGET_X = 3.0
TRUTH_TYPES = {
    "PERSON": "PERSON", "GPE": "LOCATION", "STREET_ADDRESS": "LOCATION", "ZIP_CODE": "LOCATION",
    "CREDIT_CARD": "CREDIT_CARD", "PHONE_NUMBER": "PHONE_NUMBER", "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "IBAN_CODE": "IBAN_CODE", "IP_ADDRESS": "IP_ADDRESS", "US_SSN": "US_SSN",
}
TARGETS = {"f1": 0.80, "precision": 0.85, "type_recall": 0.6, "card_phone_recall": 0.9, "address_masked": 0.6}
Triple = tuple[str, int, int]


@dataclass(frozen=True)
class Sample:
    text: str
    truth: tuple[Triple, ...]  # (generator's type, start, end)
    template: int


_ESCAPE = re.compile(r"\\([nt])")


def unescape(text: str, spans: Sequence[Triple]) -> tuple[str, tuple[Triple, ...]]:
    """The templates carry literal `\\n` and `\\t`: real line breaks, with every offset moved to match."""
    out: list[str] = []
    moved = [0] * (len(text) + 1)  # characters removed before each original offset
    last, removed = 0, 0
    for match in _ESCAPE.finditer(text):
        out.append(text[last:match.start()])
        out.append("\n" if match.group(1) == "n" else "\t")
        for i in range(last, match.start() + 1):
            moved[i] = removed
        moved[match.start() + 1] = removed  # inside the escape: maps onto the character written
        removed += 1
        last = match.end()
    out.append(text[last:])
    for i in range(last, len(text) + 1):
        moved[i] = removed
    return "".join(out), tuple((label, start - moved[start], end - moved[end]) for label, start, end in spans)


def generate(seed: int, n: int) -> list[Sample]:
    """n sentences from presidio-evaluator's bundled templates, reproducible for a seed.

    Its constructor draws from `random` before seeding itself, so every generator is seeded first;
    one provider tries to fetch a hospital list from Wikipedia, fails offline and falls back.
    """
    import numpy as np
    from faker import Faker

    random.seed(seed)
    np.random.seed(seed)
    Faker.seed(seed)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from presidio_evaluator.data_generator import (  # type: ignore[import-untyped,unused-ignore]
            PresidioSentenceFaker,
        )

        faker = PresidioSentenceFaker(locale="en_US", lower_case_ratio=LOWER_CASE_RATIO, random_seed=seed)
        raw = faker.generate_new_fake_sentences(n)
    samples = []
    for sample in raw:
        spans = [(s.entity_type, s.start_position, s.end_position) for s in sample.spans]
        text, truth = unescape(sample.full_text, spans)
        samples.append(Sample(text, truth, int(sample.template_id or 0)))
    return samples


# --- scoring ---------------------------------------------------------------------------------------

def _alnum(text: str, start: int, end: int) -> set[int]:
    return {i for i in range(start, end) if text[i].isalnum()}


def score(samples: Sequence[Sample], found: Sequence[Sequence[Triple]]) -> dict[str, Any]:
    """Per type: truth, found, recall, predictions, precision, F1, fully masked; and overall (micro)."""
    truth_n: Counter[str] = Counter()
    hit: Counter[str] = Counter()
    masked: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    correct: Counter[str] = Counter()
    for sample, predictions in zip(samples, found, strict=True):
        text = sample.text
        by_type: dict[str, set[int]] = {}
        for label, start, end in predictions:
            by_type.setdefault(label, set()).update(_alnum(text, start, end))
        anything = set().union(*by_type.values()) if by_type else set()
        truth_by_type: dict[str, set[int]] = {}
        for kind, start, end in sample.truth:
            if kind in TRUTH_TYPES:
                truth_by_type.setdefault(TRUTH_TYPES[kind], set()).update(_alnum(text, start, end))
        for kind, start, end in sample.truth:
            if kind not in TRUTH_TYPES:
                continue
            chars = _alnum(text, start, end)
            if not chars:
                continue
            label = TRUTH_TYPES[kind]
            rows = [label, "street addresses"] if kind == "STREET_ADDRESS" else [label]
            for row in rows:
                truth_n[row] += 1
                hit[row] += len(chars & by_type.get(label, set())) * 2 >= len(chars)
                masked[row] += chars <= anything
        for label, start, end in predictions:
            chars = _alnum(text, start, end)
            predicted[label] += 1
            correct[label] += bool(chars) and len(chars & truth_by_type.get(label, set())) * 2 >= len(chars)
    table: dict[str, Any] = {}
    for row in sorted(set(truth_n) | set(predicted), key=lambda r: (r == "street addresses", r)):
        table[row] = _metrics(truth_n[row], hit[row], masked[row], predicted[row], correct[row],
                              precision_applies=row != "street addresses")
    table["overall"] = _metrics(sum(v for k, v in truth_n.items() if k != "street addresses"),
                                sum(v for k, v in hit.items() if k != "street addresses"),
                                sum(v for k, v in masked.items() if k != "street addresses"),
                                sum(predicted.values()), sum(correct.values()), precision_applies=True)
    return table


def _metrics(truth: int, hit: int, masked: int, predicted: int, correct: int,
             precision_applies: bool) -> dict[str, Any]:
    recall = hit / truth if truth else None
    precision = correct / predicted if predicted and precision_applies else None
    f1 = (2 * recall * precision / (recall + precision)
          if recall is not None and precision is not None and recall + precision else None)
    return {"truth": truth, "found": hit, "recall": _r(recall), "predicted": predicted if precision_applies else None,
            "precision": _r(precision), "f1": _r(f1), "fully_masked": _r(masked / truth if truth else None)}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --- the two sides ---------------------------------------------------------------------------------

def presidio_side(model: str, entities: list[str]) -> Callable[[str], list[tuple[str, int, int, float]]]:
    """Stock presidio as its docs use it: NlpEngineProvider + AnalyzerEngine, analyze() per text."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    engine = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])

    def analyze(text: str) -> list[tuple[str, int, int, float]]:
        return [(r.entity_type, r.start, r.end, r.score) for r in analyzer.analyze(text, language="en",
                                                                                   entities=entities)]

    return analyze


def _cpu(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.process_time()
    out = fn()
    return time.process_time() - began, out


def run(seed: int, n: int, batch: int = 64) -> tuple[dict[str, Any], list[Sample], list[list[Triple]]]:
    from detectors.pii import load_pii_runner
    from detectors.pii_rules import DEFAULT_THRESHOLDS
    from detectors.runtime.settings import ModelSettings

    samples = generate(seed, n)
    texts = [s.text for s in samples]
    runner = load_pii_runner(ModelSettings(task="pii", kind="pii", max_batch=batch))
    runner.warm_up()
    presidio = presidio_side(runner.options.spacy_model, runner.labels)
    for text in texts[:20]:
        presidio(text)  # lazy recognizers and phone metadata load outside the clock
    cpu_presidio, raw = _cpu(lambda: [presidio(t) for t in texts])
    cpu_call, _ = _cpu(lambda: [runner.analyze([t]) for t in texts])
    cpu_batch, spans = _cpu(lambda: [s for i in range(0, len(texts), batch)
                                     for s in runner.analyze(texts[i:i + batch])])
    ours = [[(s.label, s.start, s.end) for s in row] for row in spans]

    def cut(row: list[tuple[str, int, int, float]], floor: float | None) -> list[Triple]:
        return [(label, start, end) for label, start, end, value in row
                if value >= (DEFAULT_THRESHOLDS.get(label, DEFAULT_THRESHOLDS["default"]) if floor is None else floor)
                and value > 0]

    ms = {"presidio_per_call": 1000 * cpu_presidio / n, "warden_per_call": 1000 * cpu_call / n,
          "warden_batched": 1000 * cpu_batch / n}
    warden = score(samples, ours)
    result: dict[str, Any] = {
        "set": {"generator": "presidio-evaluator 0.3.2 PresidioSentenceFaker, bundled templates",
                "locale": "en_US", "lower_case_ratio": LOWER_CASE_RATIO, "seed": seed, "sentences": n,
                "held_out": seed == HELD_OUT_SEED, "tuning_seed": TUNE_SEED, "held_out_seed": HELD_OUT_SEED,
                "truth_types": TRUTH_TYPES},
        "warden": {"version": runner.version, "entities": runner.labels, "scores": warden},
        "presidio": {"thresholds": "Warden's per-entity minimum scores", "scores": score(samples, [cut(r, None)
                                                                                                     for r in raw])},
        "presidio_no_threshold": {"overall": score(samples, [cut(r, 0.0) for r in raw])["overall"]},
        "speed_cpu_ms_per_text": {k: round(v, 3) for k, v in ms.items()},
        "speed_x_presidio": {"warden_per_call": round(ms["presidio_per_call"] / ms["warden_per_call"], 2),
                             "warden_batched": round(ms["presidio_per_call"] / ms["warden_batched"], 2)},
        "machine": machine(),
    }
    result["checks"] = checks(result)
    return result, samples, ours


def checks(result: dict[str, Any]) -> dict[str, bool]:
    s = result["warden"]["scores"]
    in_scope = [k for k in s if k not in ("overall", "street addresses") and s[k]["truth"]]
    t = TARGETS
    return {
        f"overall F1 >= {t['f1']}": (s["overall"]["f1"] or 0) >= t["f1"],
        f"overall precision >= {t['precision']}": (s["overall"]["precision"] or 0) >= t["precision"],
        f"every in-scope type recall >= {t['type_recall']}": all((s[k]["recall"] or 0) >= t["type_recall"]
                                                                 for k in in_scope),
        f"CREDIT_CARD and PHONE_NUMBER recall >= {t['card_phone_recall']}": all(
            (s[k]["recall"] or 0) >= t["card_phone_recall"] for k in ("CREDIT_CARD", "PHONE_NUMBER") if k in s),
        f"street addresses fully masked >= {t['address_masked']}": (s.get("street addresses", {}).get(
            "fully_masked") or 0) >= t["address_masked"],
        f"Warden batched >= {SPEED_TARGET_X:g}x presidio per call (CPU time)":
            result["speed_x_presidio"]["warden_batched"] >= SPEED_TARGET_X,
    }


def show(result: dict[str, Any]) -> None:
    info = result["set"]
    print(f"\nPII quality: {info['sentences']} sentences, seed {info['seed']} "
          f"({'held out' if info['held_out'] else 'not the held-out seed'}); {result['warden']['version']}")
    print(f"{'type':18}{'truth':>6} | {'Warden P':>8}{'R':>7}{'F1':>7}{'masked':>8} | "
          f"{'presidio P':>10}{'R':>7}{'F1':>7}{'masked':>8}")
    ours, theirs = result["warden"]["scores"], result["presidio"]["scores"]

    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.3f}"

    for row in ours:
        a, b = ours[row], theirs.get(row, {})
        print(f"{row:18}{a['truth']:>6} | {f(a['precision']):>8}{f(a['recall']):>7}{f(a['f1']):>7}"
              f"{f(a['fully_masked']):>8} | {f(b.get('precision')):>10}{f(b.get('recall')):>7}{f(b.get('f1')):>7}"
              f"{f(b.get('fully_masked')):>8}")
    print(f"presidio with no threshold, overall: {result['presidio_no_threshold']['overall']}")
    print(f"CPU ms per text: {result['speed_cpu_ms_per_text']}; x presidio: {result['speed_x_presidio']}")
    for check, ok in result["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {check}")


def show_misses(samples: Sequence[Sample], found: Sequence[Sequence[Triple]], limit: int) -> None:
    """Warden's misses and false positives, for development on the tuning seed."""
    misses, extra = [], []
    for sample, predictions in zip(samples, found, strict=True):
        text = sample.text
        for kind, start, end in sample.truth:
            label = TRUTH_TYPES.get(kind)
            chars = _alnum(text, start, end)
            if label is None or not chars:
                continue
            got = set().union(*[_alnum(text, s, e) for lb, s, e in predictions if lb == label] or [set()])
            if len(chars & got) * 2 < len(chars):
                misses.append(f"MISS {kind:14} {text[start:end]!r:40} in {text!r}")
        for label, start, end in predictions:
            chars = _alnum(text, start, end)
            truth = set().union(*[_alnum(text, s, e) for k, s, e in sample.truth if TRUTH_TYPES.get(k) == label]
                                or [set()])
            if len(chars & truth) * 2 < len(chars):
                extra.append(f"FP   {label:14} {text[start:end]!r:40} in {text!r}")
    for line in [*misses[:limit], *extra[:limit]]:
        print(line[:300])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED,
                        help=f"held out: {HELD_OUT_SEED}; tuning: {TUNE_SEED}")
    parser.add_argument("-n", type=int, default=1000, help="sentences")
    parser.add_argument("--misses", type=int, default=0, help="print this many misses and false positives")
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file")
    parser.add_argument("--no-save", action="store_true", help="print only")
    args = parser.parse_args()
    result, samples, found = run(args.seed, args.n)
    show(result)
    if args.misses:
        show_misses(samples, found, args.misses)
    if not args.no_save:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\nresults: {args.json}")


if __name__ == "__main__":
    main()
