"""A transformers token-classification model as presidio's NER, for the GPU (`nlp_engine: transformers`).

spaCy still tokenises (a blank English pipeline: presidio reads tokens for its context words),
but the entities come from a local Hugging Face NER model run batched on the runner's device,
in bf16 on CUDA. Word pieces are joined into words, the first piece's tag labels the word
(B- starts an entity, I- of the same type continues it), and the model's own probability is
the entity's score, so per-entity thresholds mean what they say. The model sees the first
`max_length` tokens of a text; the pattern recognizers still see all of it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("warden.scanner.pii")
# Common label sets (CoNLL, OntoNotes, WikiNER) to presidio's entity names; others are ignored.
DEFAULT_LABELS = {"PER": "PERSON", "PERSON": "PERSON", "LOC": "LOCATION", "GPE": "LOCATION",
                  "LOCATION": "LOCATION", "FAC": "LOCATION", "FACILITY": "LOCATION", "ADDRESS": "LOCATION",
                  "STREET_ADDRESS": "LOCATION", "NORP": "NRP", "DATE": "DATE_TIME", "TIME": "DATE_TIME"}
Entity = tuple[int, int, str, float]  # start, end, presidio label, score


def _device(wanted: str) -> str:
    import torch

    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


class TransformersNer:
    def __init__(self, path: str, labels: dict[str, str], device: str = "auto", max_length: int = 512) -> None:
        import torch
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        if not Path(path).is_dir():
            raise FileNotFoundError(f"pii ner_model {path!r} is not a directory holding a transformers "
                                    "token-classification model (nothing is downloaded at run time)")
        self.device = _device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        if not getattr(self.tokenizer, "is_fast", False):
            raise ValueError(f"pii ner_model {path!r} needs a fast tokenizer (character offsets)")
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        model = AutoModelForTokenClassification.from_pretrained(path, local_files_only=True, dtype=dtype)
        self.model = model.eval().to(self.device)
        self.id2label: dict[int, str] = {int(k): v for k, v in model.config.id2label.items()}
        self.labels = labels
        self.max_length = max_length
        self.name = Path(path).name

    def __call__(self, texts: list[str]) -> list[list[Entity]]:
        import torch

        enc = self.tokenizer(texts, return_offsets_mapping=True, padding=True, truncation=True,
                             max_length=self.max_length, return_tensors="pt")
        offsets = enc.pop("offset_mapping").tolist()
        word_ids = [enc.word_ids(i) for i in range(len(texts))]
        inputs = {k: v.to(self.device) for k, v in enc.items()}
        with torch.inference_mode():
            probs = torch.softmax(self.model(**inputs).logits.float(), dim=-1)
        best, ids = probs.max(dim=-1)
        return [self.entities(offsets[i], word_ids[i], ids[i].tolist(), best[i].tolist()) for i in range(len(texts))]

    def entities(self, offsets: list[list[int]], word_ids: list[int | None], ids: list[int],
                 scores: list[float]) -> list[Entity]:
        """Pieces to words (first piece's tag), words to entities (B- starts, I- of the same type continues)."""
        words: list[list[Any]] = []  # [start, end, tag, score]
        previous: int | None = None
        for (start, end), word, tag_id, score in zip(offsets, word_ids, ids, scores, strict=True):
            if word is None:
                previous = None
                continue  # special or padding token
            if word == previous:
                words[-1][1] = end  # another piece of the same word
                continue
            previous = word
            words.append([start, end, self.id2label.get(tag_id, "O"), score])
        found: list[list[Any]] = []  # [start, end, type, scores]
        for start, end, tag, score in words:
            prefix, _, kind = tag.partition("-") if "-" in tag else ("B", "", tag)
            if kind in ("", "O") or tag == "O":
                continue
            if prefix == "I" and found and found[-1][2] == kind:
                found[-1][1] = end
                found[-1][3].append(score)
                continue
            found.append([start, end, kind, [score]])
        out: list[Entity] = []
        for start, end, kind, kind_scores in found:
            label = self.labels.get(kind)
            if label is not None:
                out.append((start, end, label, round(min(kind_scores), 4)))
        return out
