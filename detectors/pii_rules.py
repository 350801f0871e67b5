"""The PII detector's own rules around presidio: which entities by default, how sure, what to skip.

Three kinds of rule, all pure functions over the text (no spaCy, no presidio), so they are cheap
to test and cost microseconds per text:

  * defaults: the entity set and per-entity minimum scores, each justified below;
  * the prefilter: which entities a text *could* hold at all, from character counts alone
    (no '@' -> no email; fewer than 9 digits -> no SSN; no capitalised word -> no name), so most
    recognizers and often the NER model never run on a text that cannot contain their entity,
    and the parts of a text NER needs to see (the name words and their context);
  * false-positive guards for shapes LLM traffic is full of and presidio's recognizers mistake
    for PII: order and ticket numbers, timestamps, version strings, technical tokens (S3, EC2,
    K8s, C4, H100), model names (Llama 3.1, Mistral 7B).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType

# What is scanned unless `entities` says otherwise. Left out on purpose: US_DRIVER_LICENSE (its
# weak patterns match any short letter+digit token: S3, C4, v2), URL and ORGANIZATION (not
# personal, and organisations are everywhere in chat), DATE_TIME (a date alone identifies no one
# and is in most texts), NRP (nationalities; spaCy's small model tags C4 as one).
DEFAULT_ENTITIES: tuple[str, ...] = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "US_ITIN", "IBAN_CODE", "IP_ADDRESS",
    "PERSON", "LOCATION", "US_BANK_NUMBER", "US_PASSPORT", "CRYPTO",
)

# Minimum score per entity; "default" for the rest. Presidio's scores are fixed per evidence
# kind, so a threshold chooses which evidence is enough:
#   * 0.5 (default): a checksum-validated match (CREDIT_CARD, IBAN_CODE, CRYPTO and a valid email
#     domain score 1.0), a "medium" pattern (formatted SSN 0.5, IP 0.6), or spaCy NER (a constant
#     0.85: the score cannot tell a good name from a bad one; the guards do that).
#   * PHONE_NUMBER 0.4: every phone match is already validated against a region's numbering plan
#     by `phonenumbers`, and presidio scores that 0.4; 0.5 would keep only phones that have a word
#     such as "call" or "phone" within five tokens.
#   * US_BANK_NUMBER and US_PASSPORT 0.4: their patterns (8-17 digits; 9 digits) score 0.05 and
#     a context word ("account", "bank"; "passport") lifts them to exactly 0.4, so 0.4 means
#     "a long number *and* its context word", never a bare number.
DEFAULT_THRESHOLDS: Mapping[str, float] = MappingProxyType({
    "default": 0.5, "PHONE_NUMBER": 0.4, "US_BANK_NUMBER": 0.4, "US_PASSPORT": 0.4,
})

# Entities that come from spaCy's NER and need a capitalised word to be found at all.
NAME_ENTITIES = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION"})
# Entities produced by the NER model (presidio's SpacyRecognizer) rather than a pattern.
NER_ENTITIES = NAME_ENTITIES | {"DATE_TIME", "AGE", "ID"}
# Number-shaped entities with weak evidence, the ones order numbers and timestamps get taken for.
WEAK_NUMBERS = frozenset({"PHONE_NUMBER", "US_BANK_NUMBER", "US_SSN", "US_ITIN", "US_PASSPORT",
                          "US_DRIVER_LICENSE", "UK_NHS", "MEDICAL_LICENSE"})

_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"[^\W_]+(?:['’.-][^\W_]+)*")
# Function words that open sentences ("The", "My", "Please"): capitalised there, never a name.
# "Will" and "May" are left out on purpose: they are names too.
OPENERS = frozenset({
    "the", "a", "an", "i", "my", "your", "our", "their", "his", "her", "its", "this", "that", "these", "those", "it",
    "we", "you", "they", "he", "she", "please", "can", "could", "would", "should", "is", "are", "was", "were", "do",
    "does", "did", "what", "why", "how", "when", "where", "which", "who", "if", "in", "on", "at", "for", "to",
    "from", "and", "but", "or", "so", "then", "also", "thanks", "thank", "hi", "hello", "hey", "yes", "no", "ok",
    "okay",
})
# Words that open a sentence in prompts and answers ("Write ...", "Sure, ...", "Here is ..."):
# capitalised there for the sentence, not as a name. Names that are also words ("Will", "May",
# "Mark", "Grace", "Bill", "Rose") are left out, as in OPENERS.
SENTENCE_OPENERS = frozenset({
    "sure", "certainly", "here", "there", "let", "let's", "note", "now", "just", "first", "second", "third",
    "next", "finally", "however", "instead", "because", "since", "while", "although", "as", "with", "after",
    "before", "write", "explain", "give", "list", "draft", "translate", "send", "summarise", "summarize", "create",
    "make", "tell", "show", "help", "find", "generate", "describe", "compare", "rewrite", "fix", "check", "add",
    "remove", "use", "try", "consider", "keep", "one", "two", "three", "four", "five", "six", "seven", "eight",
    "nine", "ten", "some", "many", "most", "all", "any", "each", "every", "other", "both", "not", "there's",
    "here's", "great", "good", "of", "sorry", "unfortunately", "absolutely", "overall", "generally",
})
_PRONOUN_I = frozenset({"i", "i'm", "i'll", "i've", "i'd", "i’m", "i’ll", "i’ve", "i’d"})
_NUMBER_RUN = re.compile(r"[\d\s().\-/+]*\d[\d\s().\-/+]*")  # digits and what phone formats put between them


class Features:
    """The few character facts the prefilter needs, computed once per text in C-speed passes."""

    __slots__ = ("at", "colon", "digits", "dot", "names", "run")

    def __init__(self, text: str, guarded: bool = True) -> None:
        self.digits = len(_DIGIT.findall(text))
        # most digits in one run of digits and phone punctuation ("+1 (415) 555-0132" is one run)
        self.run = 0 if self.digits < 5 else max(len(_DIGIT.findall(m)) for m in _NUMBER_RUN.findall(text))
        self.at = "@" in text
        self.dot = "." in text
        self.colon = ":" in text
        self.names = may_hold_names(text, guarded)


# Necessary conditions, each a lower bound read off presidio's recognizers: if it fails, that
# recognizer cannot match, so skipping it changes no finding. Entities not listed always run.
_NEEDS: Mapping[str, Callable[[Features], bool]] = MappingProxyType({
    "EMAIL_ADDRESS": lambda f: f.at,
    "CREDIT_CARD": lambda f: f.digits >= 12,       # shortest pattern: 4+3+3+3 digits
    "US_SSN": lambda f: f.digits >= 9,
    "US_ITIN": lambda f: f.digits >= 9,
    "US_BANK_NUMBER": lambda f: f.digits >= 8,      # 8 to 17 digits
    "US_PASSPORT": lambda f: f.digits >= 8,         # 9 digits, or a letter and 8 digits
    "UK_NHS": lambda f: f.digits >= 10,
    # The shortest valid numbers: 5 digits for a national number in presidio's regions (DE), a
    # country code and 4 digits for an international one (Niue, +683 1234).
    "PHONE_NUMBER": lambda f: f.run >= 5,
    "IBAN_CODE": lambda f: f.digits >= 2,           # the check digits
    "CRYPTO": lambda f: f.digits >= 1,              # addresses start with 1, 3 or bc1
    "US_DRIVER_LICENSE": lambda f: f.digits >= 1,
    "IP_ADDRESS": lambda f: (f.dot and f.digits >= 4) or f.colon,
    "MAC_ADDRESS": lambda f: f.colon or f.dot or f.digits >= 1,
    **{name: (lambda f: f.names) for name in NAME_ENTITIES},
})


def may_hold_names(text: str, guarded: bool = True) -> bool:
    """Whether NER is worth running: a capitalised word that could stand in a reported name.

    spaCy's small model leans on capitalisation: in lowercase text it rarely finds a name, and
    what it does find there is mostly noise ("info msg" in a log line). This is the one prefilter
    rule that can change a finding; it skips NER on about one text in six of the labeled set.
    Not counted: a sentence-opening function word or opener ("The", "Sure", "Write"), "I", and,
    when the guards run (`guarded`), a word with digits or a product name (a name the guards
    would drop whole: "H100", "Python"). tests/detectors/test_pii_gate.py checks on the PII corpus
    that the findings are the same with and without NER on the texts this skips.
    """
    return next(name_words(text, guarded), None) is not None


def name_words(text: str, guarded: bool = True) -> Iterator[tuple[int, int]]:
    """(start, end) of each capitalised word that could stand in a reported name (`may_hold_names`)."""
    if text.lower() == text:
        return
    for match in _WORD.finditer(text):
        word = match.group()
        if word.lower() == word:
            continue
        folded = word.casefold()
        if folded in _PRONOUN_I:  # capitalised wherever it stands
            continue
        if guarded and (folded in TECH_TERMS or _DIGIT.search(word)):
            continue
        if folded in OPENERS or folded in SENTENCE_OPENERS:
            before = text[:match.start()].rstrip(" \t\"'“‘([")
            if not before or before[-1] in ".!?\n":
                continue
        yield match.start(), match.end()


_CHUNK = re.compile(r"\S+")
# Whitespace-separated chunks of context NER gets on each side of a name word. spaCy's small model
# sees about 4 tokens either side of a token (its CNN: window 1, depth 4) and its entity parser reads
# the token before and the entity's start: 10 chunks (at least 10 tokens) leave every decision about a
# name word as it is with the whole text (tests/detectors/test_pii_gate.py checks it on the corpora).
NER_MARGIN = 10
# Windows covering at least this share of a text: NER runs on the whole text (nothing to save).
_WHOLE_SHARE = 0.8


def ner_windows(text: str, guarded: bool = True, margin: int = NER_MARGIN) -> tuple[tuple[int, int], ...] | None:
    """The parts of a text NER needs to see for its name entities: each name word with `margin`
    whitespace chunks either side, overlapping ones merged, always cut at whitespace (so spaCy
    tokenises a part as it tokenises the same stretch of the whole). None: the whole text (the
    parts would cover most of it). Empty: no name word, NER need not run.

    NER costs about 0.1 ms per token on one core (spaCy's small model), the largest share of a
    PII scan; a chat text names someone or somewhere in a sentence or two, not in every sentence.
    """
    words = [(m.start(), m.end()) for m in _CHUNK.finditer(text)]
    starts = [start for start, _ in words]
    parts: list[tuple[int, int]] = []
    for start, end in name_words(text, guarded):
        first = max(0, bisect.bisect_right(starts, start) - 1 - margin)
        last = min(len(words) - 1, bisect.bisect_right(starts, end - 1) - 1 + margin)
        left, right = words[first][0], words[last][1]
        if parts and left <= parts[-1][1] + 1:
            parts[-1] = (parts[-1][0], max(parts[-1][1], right))
        else:
            parts.append((left, right))
    if parts and sum(end - start for start, end in parts) >= _WHOLE_SHARE * len(text.strip()):
        return None
    return tuple(parts)


def candidate_entities(text: str, entities: Iterable[str], guarded: bool = True) -> tuple[str, ...]:
    """The subset of `entities` this text could hold; empty means nothing needs to run on it."""
    features = Features(text, guarded)
    return tuple(e for e in entities if (need := _NEEDS.get(e)) is None or need(features))


PREFILTERS = {"pii:guarded": True, "pii:unguarded": False}  # announced name -> `guarded`


def prefilter_id(guarded: bool) -> str:
    """`candidate_entities` with its `guarded` flag, by the name the scanner announces it under
    (TaskInfo.prefilter): a caller that knows the name may skip the texts it would skip."""
    return "pii:guarded" if guarded else "pii:unguarded"


# --- false-positive guards -------------------------------------------------------------------

_REFERENCE = re.compile(
    r"(?:\b(?:order|ticket|invoice|inv|case|ref|reference|tracking|shipment|parcel|package|confirmation|"
    r"booking|reservation|transaction|txn|receipt|req|incident|issue|bug|pr|build|job|task|item|sku|serial|"
    r"part|product|po|claim|rma|batch|lot|error)s?"
    r"\s*(?:number|num|no\.?|nr\.?|id)?\s*(?:is|was|:)?\s*#?\s*|#\s*)$",
    re.IGNORECASE,
)
_GLUED_PREFIX = re.compile(r"[A-Za-z]{1,12}[-_/]$")  # INV-2024-00123, PO-12345678, JIRA-4521
_VERSION_BEFORE = re.compile(
    r"(?:\b(?:v|ver|version|release|rel|build|revision|rev|tag|firmware|fw|sdk|cuda|driver|kernel|python|"
    r"node|upgrade|update|downgrade|patch|bump)\s*[:=]?\s*v?|\bv)$",
    re.IGNORECASE,
)
_VERSION_AFTER = re.compile(r"^(?:\.\d|-(?:alpha|beta|rc|dev|post|pre|snapshot)|\+[0-9A-Za-z])", re.IGNORECASE)
_DATE_SHAPE = re.compile(
    r"(?<!\d)(?:19|20)\d{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])(?!\d)"     # 2024-05-01
    r"|(?<!\d)(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|[12]\d|3[01])[-/.](?:19|20)\d{2}(?!\d)"  # 05/01/2024
    r"|(?<!\d)(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?(?!\d)",                                # 12:30:45
    re.ASCII)
# YYYYMMDD, YYYYMMDDhhmm or YYYYMMDDhhmmss, written without separators
_COMPACT_DATE = re.compile(r"(?:19[7-9]\d|20[0-3]\d)(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"
                           r"(?:(?:[01]\d|2[0-3])[0-5]\d(?:[0-5]\d)?)?")
_DOTTED = re.compile(r"\d+(?:\.\d+)+")
_EPOCH = re.compile(r"1[5-9]\d{8}(?:\d{3})?")
# Words that say a pure number is some other identifier, not a phone ("account number 9118625276").
_OTHER_NUMBER = re.compile(r"\b(?:account|acct|routing|iban|ssn|social security|passport|licen[cs]e)\b",
                           re.IGNORECASE)
_TIME_WORD = re.compile(r"\b(?:timestamp|epoch|unix|ts|time|created|updated|modified|expires|exp|iat|nbf)\b",
                        re.IGNORECASE)
# Product, model and tool names spaCy's small model takes for people or places.
TECH_TERMS = frozenset({
    "chatgpt", "gpt", "openai", "claude", "anthropic", "llama", "mistral", "mixtral", "gemini", "gemma", "qwen",
    "phi", "falcon", "bert", "roberta", "copilot", "bard", "grok", "deepseek", "whisper", "dall-e", "midjourney",
    "sora", "vllm", "ollama", "langchain", "huggingface", "hugging", "face", "pytorch", "tensorflow", "keras",
    "numpy", "pandas", "kubernetes", "k8s", "docker", "terraform", "ansible", "python", "javascript", "typescript",
    "golang", "java", "rust", "linux", "ubuntu", "debian", "windows", "macos", "ios", "android", "azure", "aws",
    "gcp", "github", "gitlab", "jira", "confluence", "slack", "redis", "postgres", "postgresql", "mysql", "mongodb",
    "kafka", "nginx", "grafana", "prometheus", "clickhouse", "spacy", "presidio", "nvidia", "cuda", "siri", "alexa",
    "cortana", "excel",
})
# Form and header field names spaCy takes for names in "Name: ...\nEmail: ..." layouts.
FIELD_WORDS = frozenset({
    "name", "email", "e-mail", "phone", "tel", "mobile", "fax", "city", "address", "subject", "from", "to", "cc",
    "bcc", "ssn", "dob", "user", "username", "password", "customer", "patient", "account", "card",
})
_NOT_IN_NAMES = re.compile(r"[@\n:/\\_=<>{}\[\]|#]")
_TECH_TOKEN = re.compile(r"[A-Za-z]{1,4}\d{1,4}[A-Za-z]{0,3}|\d{1,2}[A-Za-z]{1,3}\d{0,3}")  # S3 EC2 K8s C4 H100 4o
_NEAR = 32  # characters of context a guard looks at on either side


def _token_around(text: str, start: int, end: int) -> str:
    """The whitespace-delimited chunk holding the match (a match may be the middle of a timestamp)."""
    left = max(text.rfind(" ", 0, start), text.rfind("\n", 0, start)) + 1
    right = min((i for i in (text.find(" ", end), text.find("\n", end)) if i >= 0), default=len(text))
    return text[left:right]


_NAME_CUTS = re.compile(r"[\n:|/\\=<>{}\[\]#]")  # what no name holds but forms and markup put next to names
_EDGE = " \t\"'“”‘’()`,;."


def trim_name(text: str, start: int, end: int) -> tuple[int, int]:
    """A name found across a line break or a field separator ("Dana Harding\nEmail", "Name: Dana
    Harding", 'Zarita: "Who') cut to its piece with the most capitalised words that is neither a
    field name nor a function word (the last on a tie: a label comes first, "Ticket|Dana"); (start,
    start) when nothing is left. A span with none of those
    symbols only loses the quotes and brackets at its edges."""
    best: tuple[int, int, int] = (0, start, start)  # capitalised words, start, end
    at = start
    for piece in _NAME_CUTS.split(text[start:end]):
        stripped = piece.strip(_EDGE)
        if (stripped and stripped.casefold() not in FIELD_WORDS | OPENERS
                and any(c.isalpha() for c in stripped)):
            capitals = sum(word[:1].isupper() for word in stripped.split())
            if capitals >= best[0]:
                first = at + piece.index(stripped)
                best = (capitals, first, first + len(stripped))
        at += len(piece) + 1
    return best[1], best[2]


def _name_guard(label: str, text: str, start: int, end: int) -> str | None:
    value = text[start:end].strip()
    if _DIGIT.search(value):
        return "technical token (a name with digits)"
    if _NOT_IN_NAMES.search(value):
        return "symbols no name has (an email, a line break, a path)"
    words = value.casefold().split()
    if words and all(word in TECH_TERMS for word in words):  # "Claude", "Hugging Face"; not "Gemma Smith"
        return "product or model name"
    if len(words) == 1 and words[0] in FIELD_WORDS:
        return "form field name"
    if label == "PERSON":
        if len(words) == 1 and value.isupper() and len(value) <= 5:
            return "acronym"
        if len(words) == 1 and re.match(r"\s?-?\s?\d", text[end:end + 3]):
            return "model or product name followed by a version"
    return None


def _number_guard(label: str, text: str, start: int, end: int) -> str | None:
    before = text[max(0, start - _NEAR):start]
    value = text[start:end]
    if _REFERENCE.search(before):
        return "order, ticket or reference number"
    if _GLUED_PREFIX.search(before):
        return "part of an identifier"
    token = _token_around(text, start, end)
    if _DATE_SHAPE.search(token) and not re.fullmatch(r"\+?[\d\s().-]+", token):
        return "timestamp"
    digits = re.sub(r"\D", "", value)
    if _DATE_SHAPE.fullmatch(value.strip()) or _COMPACT_DATE.fullmatch(value):
        return "date"
    if _EPOCH.fullmatch(digits) and (_TIME_WORD.search(before) or (label == "PHONE_NUMBER" and digits == value)):
        # Unformatted epoch-shaped phones are dropped even without a time word: logs are full of
        # them, while the real numbers of that shape (Brazilian landlines, areas 15-19) are rare.
        return "unix timestamp"
    if label == "PHONE_NUMBER" and digits == value and _OTHER_NUMBER.search(before):
        return "another kind of number (by its context word)"
    return _version_guard(text, start, end) if _DOTTED.fullmatch(value) else None


def _version_guard(text: str, start: int, end: int) -> str | None:
    before = text[max(0, start - _NEAR):start]
    if _VERSION_BEFORE.search(before) or _VERSION_AFTER.match(text[end:end + 12]):
        return "version string"
    if re.search(r"\d\.$", before):
        return "part of a longer dotted number"
    return None


def false_positive(label: str, text: str, start: int, end: int) -> str | None:
    """Why a finding is a known false-positive shape (for logs and tests), or None to keep it.

    Guards apply only where evidence is weak: a Luhn-valid card, a checksummed IBAN or a valid
    email is never dropped by them.
    """
    if label in NAME_ENTITIES:
        return _name_guard(label, text, start, end)
    if label in WEAK_NUMBERS:
        if _TECH_TOKEN.fullmatch(text[start:end]):
            return "technical token"
        return _number_guard(label, text, start, end)
    if label == "IP_ADDRESS":
        return _version_guard(text, start, end)
    return None


def shadowed(findings: list[tuple[str, float, int, int]]) -> set[int]:
    """Indices of findings inside another type's stronger finding: a Luhn-valid run of digits in an
    IBAN, a phone-shaped IP address, a name inside an email. (label, score, start, end) each.

    A sweep by start keeps only findings still open, so a long text with many findings costs
    findings x overlap depth, not findings squared.
    """
    hidden: set[int] = set()
    active: list[int] = []
    for i in sorted(range(len(findings)), key=lambda k: (findings[k][2], -findings[k][3])):
        label, score, start, end = findings[i]
        active = [o for o in active if findings[o][3] > start]
        for o in active:  # each starts at or before this one
            o_label, o_score, o_start, o_end = findings[o]
            if o_label == label or end > o_end:
                continue
            if (o_start, o_end) == (start, end):  # the same place: the higher score wins
                if o_score > score:
                    hidden.add(i)
                elif score > o_score:
                    hidden.add(o)
            elif o_score >= score:
                hidden.add(i)
        active.append(i)
    return hidden


class AllowList:
    """Literal strings (company or product names) never reported, matched case-insensitively.

    A finding is dropped when its text equals an allowed string or lies inside an occurrence of
    one in the text ("Acme" found as a PERSON inside "Acme Robotics").
    """

    def __init__(self, terms: Iterable[str]) -> None:
        cleaned = sorted({t.strip() for t in terms if t.strip()}, key=len, reverse=True)
        self._exact = frozenset(t.casefold() for t in cleaned)
        self._pattern = re.compile("|".join(map(re.escape, cleaned)), re.IGNORECASE) if cleaned else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def checker(self, text: str) -> Callable[[int, int], bool]:
        """Whether a finding at (start, end) of `text` is allowed; the text is searched once."""
        if self._pattern is None:
            return lambda start, end: False
        places = [(m.start(), m.end()) for m in self._pattern.finditer(text)]

        def allowed(start: int, end: int) -> bool:
            if text[start:end].strip().casefold() in self._exact:
                return True
            return any(a <= start and end <= b for a, b in places)

        return allowed
