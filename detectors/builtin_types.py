"""The built-in detector types: each one's options (the keys of its `detectors:` entry) and factory.

The options models form one pydantic union discriminated on `type`, so an error in a built-in
entry names the type it was checked as (`detectors.0.scanner.task: Field required`).
`detector_types()` adds the installed plugins (detectors/registry.py says how they are found).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from detectors.abuse import ExemplarSimilarity, InjectionRules, PromptLeakage, default_exemplars, parse_exemplars
from detectors.base import Detector, DetectorUnavailable
from detectors.patterns import PatternDetector
from detectors.registry import DetectorOptions, DetectorType, DetectorTypes, ScannerTaskOptions
from detectors.runtime.client import ScannerClient, ScannerError
from detectors.scan_cache import FindingsCache
from detectors.scanned import ScannerDetector, Shaping

log = logging.getLogger("warden.policy")


class ScannerOptions(ScannerTaskOptions):
    """`type: scanner`: a model task of the scanner process (classifier scores or PII spans).

    The last three keys shape what a scores task reads (detectors/scanned.py says why)."""

    type: Literal["scanner"]
    report_min: float = Field(0.0, ge=0, le=1, description="scores below this are not findings at all")
    window_words: int = Field(64, ge=0, description="scores: a longer text is scored in overlapping windows of "
                              "this many words, half a window apart, and the max wins; 0: one piece")
    classifier_view: bool = Field(True, description="scores: also score the text with leetspeak folded and "
                                  "spaced letters joined; the max wins")
    threat_rules: bool = Field(True, description="scores with a `threat` label: the threat rules join the model "
                               "(threat = max of both; toxicity raised to the rules' score)")
    cache_entries: int = Field(65536, ge=0, description="findings of this many distinct texts are kept (keyed by a "
                               "hash: no text is kept), so a text seen again (earlier turns of a conversation, an "
                               "agent's context, a shared system prompt) is not scanned again; 0: off")


class PatternsOptions(DetectorOptions):
    """`type: patterns`: secrets and credentials, and configured canary strings, in-line."""

    type: Literal["patterns"]
    secrets: bool = True
    canaries: list[str] = Field(default_factory=list, description="strings whose appearance means leakage")


class InjectionRulesOptions(DetectorOptions):
    """`type: injection_rules`: phrasings known prompt attacks share, in-line."""

    type: Literal["injection_rules"]


class SimilarityOptions(ScannerTaskOptions):
    """`type: similarity`: cosine similarity to attack exemplars, through an embedding task."""

    type: Literal["similarity"]
    exemplars_file: str | None = Field(None, description="one attack per line (default: the shipped set)")
    report_min: float = Field(0.0, ge=0, le=1, description="scores below this are not findings at all")


class LeakageOptions(DetectorOptions):
    """`type: leakage`: system-prompt word n-grams repeated in an output (responses only)."""

    type: Literal["leakage"]
    ngram: int = Field(5, ge=2, description="words per n-gram")


AnyBuiltin = ScannerOptions | PatternsOptions | InjectionRulesOptions | SimilarityOptions | LeakageOptions
BuiltinOptions = Annotated[AnyBuiltin, Field(discriminator="type")]
BUILTIN_OPTIONS: TypeAdapter[AnyBuiltin] = TypeAdapter(BuiltinOptions)


def _connected(scanner: ScannerClient | None, name: str) -> ScannerClient:
    if scanner is None:  # DetectorType.create checks first; this narrows the type for the factories
        raise RuntimeError(f"detector {name!r} needs the scanner, which is not running")
    return scanner


async def _described(detector: ScannerDetector | ExemplarSimilarity) -> Detector:
    try:
        await detector.describe()
    except (DetectorUnavailable, ScannerError) as exc:
        # An external scanner may come up after the proxy: the detector's fail rule covers the gap.
        log.warning("detector %s: cannot describe its model yet (%s)", detector.name, exc)
    return detector


async def _scanner(options: ScannerOptions, scanner: ScannerClient | None) -> Detector:
    return await _described(ScannerDetector(options.name, options.task, _connected(scanner, options.name),
                                            frozenset(options.directions), report_min=options.report_min,
                                            timeout_s=options.timeout_s,
                                            shaping=Shaping(options.window_words, options.classifier_view,
                                                            options.threat_rules),
                                            cache=FindingsCache(options.cache_entries) if options.cache_entries
                                            else None))


async def _patterns(options: PatternsOptions, scanner: ScannerClient | None) -> Detector:
    return PatternDetector(options.name, frozenset(options.directions), secrets=options.secrets,
                           canaries=options.canaries)


async def _injection_rules(options: InjectionRulesOptions, scanner: ScannerClient | None) -> Detector:
    return InjectionRules(options.name, frozenset(options.directions))


async def _similarity(options: SimilarityOptions, scanner: ScannerClient | None) -> Detector:
    source = options.exemplars_file
    exemplars = await asyncio.to_thread(
        lambda: parse_exemplars(Path(source).read_text(encoding="utf-8")) if source else default_exemplars())
    return await _described(ExemplarSimilarity(options.name, options.task, _connected(scanner, options.name),
                                               frozenset(options.directions), exemplars,
                                               report_min=options.report_min, timeout_s=options.timeout_s))


async def _leakage(options: LeakageOptions, scanner: ScannerClient | None) -> Detector:
    return PromptLeakage(options.name, options.ngram)  # responses only, whatever `directions` says


BUILTIN_TYPES: tuple[DetectorType[Any], ...] = (
    DetectorType("scanner", ScannerOptions, _scanner),
    DetectorType("patterns", PatternsOptions, _patterns),
    DetectorType("injection_rules", InjectionRulesOptions, _injection_rules),
    DetectorType("similarity", SimilarityOptions, _similarity),
    DetectorType("leakage", LeakageOptions, _leakage),
)


def detector_types() -> DetectorTypes:
    """The built-in types and the installed plugins, whose entry points are read when an entry names one."""
    return DetectorTypes(BUILTIN_TYPES, BUILTIN_OPTIONS.validate_python)
