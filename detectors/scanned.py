"""A detector whose model runs in the scanner process; the proxy side shapes what it reads and finds.

For a task that scores whole texts (a classifier: toxicity, a prompt-injection model), three
evasions are closed here, on the proxy side, so they hold for every model kind alike (the
BiLSTM, detoxify checkpoints, any transformers classifier) without each runner learning them:

  * windows: a model reads a bounded prefix or suffix (the BiLSTM its last 100 words, a
    transformer its first `max_length` tokens), so an insult padded with benign words scored
    0.000. A text longer than `window_words` words is scored in overlapping windows (half a
    window apart) and each label's score is the max over them;
  * the classifier's view (detectors/normalize.py `classifier_view`): leetspeak folded and spaced
    letters joined; when it differs from the text, both are scored and the max wins;
  * threats: a model that reports `threat` gets the threat rules (detectors/threats.py) as an
    ensemble member: `threat` is the max of the model's score and the rules', and `toxicity` is
    raised to the rules' score too, since an explicit threat is toxic by the models' own
    (Jigsaw's) definition, so a policy on either label sees it;
  * insults, identity attacks and sexual harassment: a model that reports `toxicity` gets the
    abuse rules (detectors/abuse_rules.py) the same way: `insult`, `identity_attack` and
    `sexual_explicit` (or `obscene` where the model has no such label) are raised to the rules'
    score, and `toxicity` with them;
  * clauses: a long sentence is also scored in small windows (`clause_words`), because a small
    model dilutes an insult glued into an unpunctuated benign sentence even inside one window;
  * words said by no one: a word-level model scores "you're not an idiot" or "calling someone an
    idiot is rude" as an insult. Where every insult or profanity word of a text is negated or
    reported (detectors/abuse_rules.py `neutral_view`), the text is scored again without them and
    each label keeps the lower score (with the abuse rules' switch).

Span tasks (PII) get none of this: their texts go as the chain hands them (the normalised view),
and their spans come back for the chain to map to the original text.

Either kind answers a text it has scanned before from its findings cache (detectors/scan_cache.py,
`cache_entries`): a conversation's earlier turns, an agent's resent context and a shared system
prompt are scanned once, not on every request that carries them.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import numpy as np

from detectors.abuse_rules import AbuseRules, neutral_view
from detectors.base import DetectorUnavailable, Direction, Finding, Priority
from detectors.holdback import pii_tail
from detectors.normalize import classifier_view
from detectors.pii_rules import PREFILTERS, candidate_entities
from detectors.runtime.client import ScannerClient, ScannerError, ScanResult
from detectors.runtime.protocol import MAX_TEXTS_PER_CALL, Span
from detectors.scan_cache import FindingsCache
from detectors.threats import ThreatRules

_WORD = re.compile(r"\S+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def windows(text: str, size: int, stride: int | None = None) -> list[str]:
    """`text` as overlapping windows of `size` words, `stride` words apart (default: half a window);
    the last window ends with the text. A text of `size` words or fewer, or `size` 0, is one window."""
    if size <= 0:
        return [text]
    words = [m.span() for m in _WORD.finditer(text)]
    if len(words) <= size:
        return [text]
    step = max(1, stride or size // 2)
    starts = list(range(0, len(words) - size + 1, step))
    if starts[-1] != len(words) - size:
        starts.append(len(words) - size)
    return [text[words[s][0]:words[s + size - 1][1]] for s in starts]


def pieces(text: str, size: int, clause: int = 0) -> list[str]:
    """What a classifier scores of one text: its windows and, when it has several sentences, each
    sentence (windowed if long). Sentences because a small model's score of an insult is diluted by
    the benign words around it even inside one window (the BiLSTM's max pooling and dense layer
    see them all): alone, a padded insult scores what it scores unpadded. A sentence longer than
    `clause` words (0: never) is also read in windows of `clause` words, for an insult glued into a
    sentence with no punctuation to cut it out."""
    out = windows(text, size)
    if size > 0:
        sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
        if len(sentences) > 1:
            out += [w for sentence in sentences for w in windows(sentence, size)]
        if clause > 0:
            out += [w for sentence in sentences for w in windows(sentence, clause)]
    return list(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class Shaping:
    """How a scores task's texts are shaped; `Shaping(0, False, False)` sends each text as it is."""

    window_words: int = 64
    classifier_view: bool = True
    threat_rules: bool = True
    abuse_rules: bool | None = None  # None: as `threat_rules`, so that one config key switches the rules
    clause_words: int = 16


class ScannerDetector:
    def __init__(
        self,
        name: str,
        task: str,
        client: ScannerClient,
        directions: frozenset[Direction],
        *,
        report_min: float = 0.0,
        timeout_s: float | None = None,
        shaping: Shaping | None = None,
        cache: FindingsCache | None = None,
    ) -> None:
        self.name = name
        self.task = task
        self.client = client
        self.directions = directions
        self.report_min = report_min
        self.timeout_s = timeout_s
        self.shaping = shaping or Shaping()
        self.labels: tuple[str, ...] = ()
        self.version = "unknown"
        self.output: str | None = None  # learnt from the scanner: "scores", "spans" or "vectors"
        self._threats = ThreatRules() if self.shaping.threat_rules else None
        abuse = self.shaping.threat_rules if self.shaping.abuse_rules is None else self.shaping.abuse_rules
        self._abuse = AbuseRules() if abuse else None
        self._guarded: bool | None = None  # the scanner's PII prefilter (`guarded` flag), when it has one
        self._described_on = -1  # the client's connection count when describe() last answered
        self.cache = cache  # findings of texts already scanned (detectors/scan_cache.py)

    async def describe(self) -> None:
        """Learn labels, output and model version from the scanner, for findings' lineage."""
        info = (await self.client.ping()).get(self.task)
        self._described_on = self._connections()
        if info is None:
            raise DetectorUnavailable(f"the scanner has no model for task {self.task!r}")
        self.labels = tuple(info.labels)
        self.output = info.output
        self._guarded = PREFILTERS.get(info.prefilter)
        self.version = f"{info.kind}:{info.model_version}"

    def _connections(self) -> int:
        return int(getattr(self.client, "connections", 0))  # in-process test clients never reconnect

    def holdback(self, text: str) -> int:
        """A span task finds PII (detectors/holdback.py `pii_tail`); a task that scores whole texts
        cannot say where a stream may be cut, so it is held its whole window."""
        return pii_tail(text) if self.output == "spans" else len(text)

    async def detect(self, texts: list[str], priority: Priority = "request") -> list[list[Finding]]:
        if not texts:
            return []
        if self.output is None or self._connections() != self._described_on:
            # The scanner was not up when the proxy started, or the client has reconnected since (a
            # restarted scanner may run another model version or PII prefilter): learn it now. If it
            # still cannot answer, the scan below says so.
            with contextlib.suppress(DetectorUnavailable, ScannerError):
                await self.describe()
        cache = self.cache
        if cache is None or not cache.entries:
            return await self._detect(texts, priority)
        version = self.version
        keys, cached = cache.lookup(version, texts)
        missing = [i for i, row in enumerate(cached) if row is None]
        if missing:
            fresh = await self._detect([texts[i] for i in missing], priority)
            cache.store(version, [keys[i] for i in missing], fresh)
            for i, row in zip(missing, fresh, strict=True):
                cached[i] = row
        return [row or [] for row in cached]

    async def _detect(self, texts: list[str], priority: Priority) -> list[list[Finding]]:
        if self.output == "scores":
            return await self._classify(texts, priority)
        if self.output == "spans" and self._guarded is not None:
            return await self._spans_of_candidates(texts, priority, self._guarded)
        result = await self._scan(texts, priority)
        if result.spans is not None:
            return [self._span_findings(row) for row in result.spans]
        if result.scores is None:
            raise DetectorUnavailable(f"{self.name}: the scanner's {self.task!r} model returns no scores")
        return [self._findings(list(result.labels), row, "") for row in result.scores]

    async def _spans_of_candidates(self, texts: list[str], priority: Priority, guarded: bool) -> list[list[Finding]]:
        """Only the texts the scanner's own prefilter would look at go to it (no '@', no capitalised
        word, too few digits: nothing to find); the rest have no findings, as they would there. A
        stream sends many small segments, half of which hold nothing a recognizer could match."""
        send = [i for i, text in enumerate(texts) if candidate_entities(text, self.labels, guarded)]
        out: list[list[Finding]] = [[] for _ in texts]
        if not send:
            return out
        result = await self._scan([texts[i] for i in send], priority)
        if result.spans is None:
            raise DetectorUnavailable(f"{self.name}: the scanner's {self.task!r} model returns no spans")
        for i, row in zip(send, result.spans, strict=True):
            out[i] = self._span_findings(row)
        return out

    def _span_findings(self, row: list[Span]) -> list[Finding]:
        return [Finding(self.name, s.label, s.score, s.start, s.end, s.explanation) for s in row]

    async def _scan(self, texts: list[str], priority: Priority) -> ScanResult:
        try:
            return await self.client.scan(self.task, texts, priority=priority, timeout_s=self.timeout_s)
        except ScannerError as exc:
            raise DetectorUnavailable(f"{self.name}: {exc}") from exc

    async def _classify(self, texts: list[str], priority: Priority) -> list[list[Finding]]:
        """Each text's pieces (windows of the text and of its classifier view) scored in one call."""
        shaping = self.shaping
        batch: list[str] = []
        owner: list[int] = []
        folded: list[str] = []
        for index, text in enumerate(texts):
            variants = [text]
            if shaping.classifier_view and (view := classifier_view(text)) != text:
                variants.append(view)
            folded.append(variants[-1])
            for variant in variants:
                chunk = pieces(variant, shaping.window_words, shaping.clause_words)
                batch.extend(chunk)
                owner.extend([index] * len(chunk))
        labels, best, count = await self._best(batch, owner, len(texts), priority)
        if self._abuse is not None and "toxicity" in labels:
            best = await self._without_neutral_words(texts, folded, best, priority)
        out = []
        for index, text in enumerate(texts):
            note = f" (max over {count[index]} windows and views)" if count[index] > 1 else ""
            row = best[index]
            if self._threats is not None and "threat" in labels:
                row, note = self._with_threats(labels, row.copy(), (text, folded[index]), note)
            if self._abuse is not None and "toxicity" in labels:
                row, note = self._with_abuse(labels, row.copy(), (text, folded[index]), note)
            out.append(self._findings(labels, row, note))
        return out

    async def _best(self, batch: list[str], owner: list[int], n: int,
                    priority: Priority) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Each owner's max per label over its pieces (and how many pieces it had)."""
        rows: list[np.ndarray] = []
        labels: list[str] = []
        for at in range(0, len(batch), MAX_TEXTS_PER_CALL):
            result = await self._scan(batch[at:at + MAX_TEXTS_PER_CALL], priority)
            if result.scores is None:
                raise DetectorUnavailable(f"{self.name}: the scanner's {self.task!r} model returns no scores")
            labels = list(result.labels)
            rows.append(np.asarray(result.scores, dtype=np.float64).reshape(-1, len(labels)))
        scores = np.concatenate(rows) if rows else np.zeros((0, len(labels)))
        best = np.zeros((n, len(labels)))
        count = np.zeros(n, dtype=int)
        if len(owner):
            np.maximum.at(best, np.asarray(owner), scores)
            np.add.at(count, np.asarray(owner), 1)
        return labels, best, count

    async def _without_neutral_words(self, texts: list[str], folded: list[str], best: np.ndarray,
                                     priority: Priority) -> np.ndarray:
        """A text whose insult and profanity words are all negated or reported (abuse_rules
        `neutral_view`) is scored again without them; each label keeps the lower score. Only texts
        the model scored at 0.5 or more (or `report_min`, if higher), and only with the abuse rules on."""
        batch: list[str] = []
        owner: list[int] = []
        for index, text in enumerate(texts):
            if best[index].max(initial=0.0) < max(self.report_min, 0.5):
                continue
            views = [neutral_view(v) for v in dict.fromkeys((text, folded[index]))]
            if any(v is None for v in views):
                continue
            for view in views:
                assert view is not None
                chunk = pieces(view, self.shaping.window_words, self.shaping.clause_words)
                batch.extend(chunk)
                owner.extend([index] * len(chunk))
        if not batch:
            return best
        _, masked, count = await self._best(batch, owner, len(texts), priority)
        redone = count > 0
        best = best.copy()
        best[redone] = np.minimum(best[redone], masked[redone])
        return best

    def _with_threats(self, labels: list[str], row: np.ndarray, texts: tuple[str, str],
                      note: str) -> tuple[np.ndarray, str]:
        assert self._threats is not None
        matches = [m for m in (self._threats.score(t) for t in dict.fromkeys(texts)) if m is not None]
        if not matches:
            return row, note
        rule = max(matches, key=lambda m: m.score)
        threat = labels.index("threat")
        if rule.score > row[threat]:
            row[threat] = rule.score
            note += f"; threat rules: {rule.why} ({rule.score:.2f})"
        if "toxicity" in labels:
            tox = labels.index("toxicity")
            row[tox] = max(row[tox], rule.score)
        return row, note

    def _with_abuse(self, labels: list[str], row: np.ndarray, texts: tuple[str, str],
                    note: str) -> tuple[np.ndarray, str]:
        """Each label the rules found is raised to their score; `toxicity` to the highest of them."""
        assert self._abuse is not None
        sexual = "sexual_explicit" if "sexual_explicit" in labels else "obscene"
        for text in dict.fromkeys(texts):
            for label, rule in self._abuse.best(text).items():
                label = sexual if label == "sexual" else label
                for name in (label, "toxicity"):
                    if name in labels and rule.score > row[labels.index(name)]:
                        row[labels.index(name)] = rule.score
                        if name == label:
                            note += f"; abuse rules: {rule.why} ({rule.score:.2f})"
        return row, note

    def _findings(self, labels: list[str], row: np.ndarray, note: str) -> list[Finding]:
        return [Finding(self.name, label, float(score), explanation=f"{self.task} model scored {label} "
                        f"{score:.3f}{note}") for label, score in zip(labels, row, strict=True)
                if score >= self.report_min]
