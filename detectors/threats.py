"""Explicit threats of violence: rules and a lexicon, an ensemble member beside the toxicity model.

Why rules: the Jigsaw-trained models Warden ships offline score explicit threats low (the BiLSTM's
highest `threat` on 17 written threats was 0.16), so a `threat` block rule never fired. A threat
has a narrow grammar that rules read well: a speaker who commits to harm ("I will", "I'm going
to", "we'll") + a violent verb + a person as its object ("you", "your family", "him"), or a
fate announced to the reader ("you're dead", "I know where you live"). What keeps the rules from
firing on hard negatives:
  * the object must be a person or a body part, so "kill the process", "shoot you an email",
    "beat you at chess" and "kill it on stage" do not match;
  * negation between the speaker and the verb ("I will never hurt you") cancels the match;
  * reported or quoted speech ("he said he will kill me", text inside double quotes, a line from
    a film or a song) scores `REPORTED`, below any sensible threshold: the writer threatens no one.

Why inside the toxicity detector (detectors/scanned.py) rather than a detector type of its own:
the verdict then lands on the labels policies already name (`toxicity/threat`, `toxicity`), so
examples/warden.yaml's `threat` block rule and `warden up`'s `toxicity` rule catch threats with no
config change. The rules read the normalised view (detectors/normalize.py), where typographic
quotes and apostrophes are already ASCII, and its leetspeak fold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXPLICIT, VEILED, REPORTED = 0.9, 0.75, 0.3

_VERB = (r"(?:kill|murder|shoot|stab|strangle|choke|slit|behead|butcher|beat|bash|smash|punch|hurt|rape|burn|"
         r"bomb|gut|hang|lynch|slaughter|execute|break|snap|poison|drown|bury|torture|hunt|end|destroy|skin|"
         r"stomp|kick|shank|smother|curb[- ]?stomp|gun|run\s+over|blow\s+up|cut|slice|put\s+(?:a|\w+)\s+"
         r"(?:bullets?|knife|knives|blade|hole|holes|slug)\s+(?:in|into|through))")
_BODY = (r"(?:head|face|throat|neck|skull|legs?|arms?|bones?|teeth|jaw|nose|fingers?|knees?|spine|body|guts|"
         r"family|kids?|children|wife|husband|mother|mom|mum|dad|father|sister|brother|friends?|dog|cat|"
         r"house|home|car|life|ass|brains?)")
_OBJECT = (rf"(?:you|u|ya|y'all|yall|him|her|them|you\s+all|all\s+of\s+you|every\s+one\s+of\s+you|"
           rf"(?:your|ur|his|her|their)\s+(?:\w+\s+)?{_BODY}|"
           rf"the\s+(?:shit|crap|hell|fuck|living\s+daylights)\s+out\s+of\s+(?:you|u|him|her|them))")
# People named by role or insult ("that judge", "this bastard"): objects for calls on others to harm.
_PERSON = (r"(?:(?:that|this|the|those|these)\s+(?:\w+\s+)?(?:judge|judges|guy|guys|man|men|woman|women|cop|cops|"
           r"officer|president|senator|politician|mayor|governor|minister|boss|teacher|doctor|nurse|reporter|"
           r"journalist|landlord|neighbou?r|kid|girl|boy|bitch|bastard|asshole|prick|cunt|traitor|scumbag|"
           r"person|people|family|witness|ref|referee|ceo|manager))")
_SPEAKER = (r"\b(?:i|we)(?:'ll|'d|\s+will|\s+shall|\s+gonna|\s+wanna|"
            r"(?:'m|\s+am|'re|\s+are)\s+(?:going\s+to|gonna|about\s+to|coming\s+to|gunna)|"
            r"\s+(?:want|plan|intend|promise|swear|need|have|got)\s+to|"
            r"\s+(?:would|'d)\s+(?:love|like)\s+to|\s+can't\s+wait\s+to)")
_NOT_A_THREAT_AFTER = (r"(?:\s+(?:at|in)\s+(?:\w+\s+){0,2}(?:game|games|match|chess|poker|tennis|golf|court|race|"
                       r"finals?|debate|tournament|league|round|contest|quiz|trivia|arm\s+wrestling|\w+ball)\b|"
                       r"\s+(?:an?\s+)?(?:e-?mail|message|text|note|line|dm|link|invite|invitation|reply|call)\b|"
                       r"\s+with\s+kindness\b|\s+to\s+it\b|\s+away\b)")
THREAT_RULES: tuple[tuple[str, float, str], ...] = (
    (rf"{_SPEAKER}(?P<gap>(?:\s+[\w']+){{0,4}}?)\s+{_VERB}(?:ing|s|ed)?\s+{_OBJECT}\b(?!{_NOT_A_THREAT_AFTER})",
     EXPLICIT, "a speaker commits to violence against a person"),
    (rf"\b(?:someone|somebody|people|you\s+all|y'all)\s+(?:should|needs?\s+to|ought\s+to|has\s+to|have\s+to|gotta)"
     rf"(?P<gap>)\s+{_VERB}\s+(?:{_OBJECT}|{_PERSON})\b(?!{_NOT_A_THREAT_AFTER})", EXPLICIT,
     "calls on others to harm a person"),
    (rf"\b(?:i|we)(?:'m|\s+am|'re|\s+are)(?P<gap>(?:\s+(?:so|just|really|literally|definitely))*)\s+"
     rf"(?:stabbing|shooting|killing|murdering|strangling|choking|gutting|torturing|drowning|slitting|beheading|"
     rf"lynching|executing|poisoning|hunting|smashing|breaking)\s+{_OBJECT}\b(?!{_NOT_A_THREAT_AFTER})", EXPLICIT,
     "a speaker announces violence against a person"),
    (r"\b(?:i|we)(?:'ll|\s+will|\s+shall|(?:'m|\s+am|'re|\s+are)\s+(?:going\s+to|gonna))\s+make\s+sure\s+"
     r"(?:you|u|he|she|they)(?P<gap>)\s+(?:never|don't|do\s+not|can't|cannot|won't|will\s+never)\s+"
     r"(?:walks?|talks?|speaks?|breathes?|wakes?\s+up|stands?|moves?|sees?|sleeps?|eats?)\s+again\b", EXPLICIT,
     "promises the reader lasting harm"),
    (r"\byou(?:'re|\s+are|\s+r)\s+(?:so\s+|already\s+)?(?:dead|a\s+dead\s+(?:man|woman|person|boy|girl)|"
     r"going\s+to\s+die|gonna\s+die)\b(?P<gap>)", EXPLICIT, "announces the reader's death"),
    (r"\b(?:i|we)\s+know\s+where\s+you\s+(?:live|sleep|work)\b(?P<gap>)", EXPLICIT, "knows where the reader lives"),
    (r"\b(?:i|we)(?:'m|\s+am|'re|\s+are)\s+coming\s+for\s+(?:you|u)\b(?P<gap>)", EXPLICIT, "is coming for the reader"),
    (r"\byou(?:'ll|\s+will|\s+are\s+going\s+to|'re\s+going\s+to|'re\s+gonna|\s+gonna)\s+(?:die|bleed|suffer)\b"
     r"(?P<gap>)", EXPLICIT, "announces the reader's suffering"),
    (r"\b(?:watch\s+your\s+back|sleep\s+with\s+one\s+eye\s+open|your\s+days\s+are\s+numbered|"
     r"you(?:'ll|\s+will)\s+(?:pay\s+for\s+(?:this|that|it)|regret\s+(?:this|it|that)|be\s+sorry)|"
     r"you(?:'ll|\s+will)\s+never\s+(?:walk|talk|breathe|wake\s+up)\s+again|"
     r"(?:when|until|till|'til|once|after)\s+(?:i|we)(?:'m|\s+am|'re|\s+are)\s+(?:done|finished|through)\s+with\s+"
     r"(?:you|u)\b|"
     r"(?:you|your\s+(?:\w+\s+)?(?:family|kids?|children|wife|husband|mother|mom|dad|sister|brother|friends?))"
     r"\s+(?:won't|will\s+not|(?:isn't|aren't|is\s+not|are\s+not)\s+going\s+to)\s+be\s+safe"
     r"(?=\s*(?:[.!?,;:]|$|\s+(?:after|now|anymore|any\s+more|anywhere|here|there|tonight|again|for\s+long|"
     r"from\s+(?:me|us)))\b)|"
     r"(?:i|we)(?:'ll|\s+will)\s+(?:find|get)\s+(?:you|u)\b(?!\s+(?:a|an|some|the|one|two|more|another|something)\b))"
     r"(?P<gap>)", VEILED, "a veiled threat"),
)
_NEGATION = re.compile(r"\b(?:not|never|no\s+way|n't|nobody|no\s+one)\b|n't\b", re.IGNORECASE)
_REPORTING = re.compile(
    r"\b(?:said|says|say|saying|told|tells|tell|wrote|writes|texted|messaged|emailed|posted|threatened|threatening|"
    r"threat|threats|screamed|yelled|shouted|whispered|claimed|quote|quoted|quoting|lyrics?|sings|sang|song|"
    r"character|villain|movie|film|book|novel|story|scene|script|episode|meaning|means|mean|translate|report|"
    r"reported|someone\s+(?:who|that)|what\s+(?:do|should|does)|if\s+someone|when\s+someone|called|calling|calls|"
    # a word, a term, a line: reported only as "the word ...", "a line from", "words like" ("one more
    # word and you're dead" is a threat, not a quotation)
    r"(?:the|this|that|these|those|a|an|such|same)\s+(?:word|words|term|terms|phrase|phrases|line|lines|slur|slurs|"
    r"example|examples)|(?:words|terms|slurs|phrases)\s+like|"
    r"claim|claims|claimed|claiming|believe|believes|stereotypes?|myths?|accused|"
    r"accusing|offensive|rude|insult|insults|insulted|why\s+do|why\s+does|is\s+it)\b",
    re.IGNORECASE)
_SENTENCE_START = re.compile(r"[.!?\n](?=[^.!?\n]*$)")
_FRAME_WORDS = 10
_CLAUSE_START = re.compile(r"[.!?\n,;:](?=[^.!?\n,;:]*$)")
# A single quote opens a quotation where a word follows it and none precedes it ("said 'you idiot'");
# an apostrophe inside a word ("you're") is neither.
_OPEN_SINGLE = re.compile(r"(?<![\w'])'(?=\w)")
_CLOSE_SINGLE = re.compile(r"(?<=[\w.!?,])'(?![\w'])")


_COORDINATED = re.compile(r"\b(?:and|or|then)\s*,?\s*$", re.IGNORECASE)
# A capitalised word right after a lowercase one, no punctuation between: a sentence glued into
# another ("... that used to Your code is garbage"), the padding attack; not "I" or "I'm".
_GLUED = re.compile(r"[a-z]\s+$")


def reported(text: str, start: int, end: int, scope: re.Pattern[str] = _SENTENCE_START,
             coordinated: bool = False, cues: re.Pattern[str] | None = None) -> bool:
    """Whether text[start:end] is reported, quoted or asked about rather than said: inside double
    or single quotes or backticks (code), or after a reporting word ("said", "calling", "the word", "why do") in its
    sentence (or clause, with `scope=CLAUSE`), at most `_FRAME_WORDS` words back, so that a
    reporting word far back in a long unpunctuated padding does not excuse what follows. The writer
    then attacks no one. With `coordinated`, a match right after "and", "or" or "then" is a clause of
    its own ("say one more word and you're dead": an imperative's condition, not a report), so
    reporting words before it do not count; quotes still do. So with a match that opens a sentence
    glued into another without punctuation ("... that used to Your code is garbage"): the words
    before belong to the other sentence. `cues` replaces the reporting words."""
    before = text[:start]
    cut = scope.search(before)
    head = " ".join((before[cut.end():] if cut else before).split()[-_FRAME_WORDS:])
    if before.count('"') % 2 == 1 or before.count("`") % 2 == 1:
        return True
    glued = text[start:start + 1].isupper() and _GLUED.search(before) is not None and not re.match(
        r"I\b", text[start:start + 2])
    if (cues or _REPORTING).search(head) and not (coordinated and _COORDINATED.search(before)) and not glued:
        return True
    sentence_cut = _SENTENCE_START.search(before)
    sentence = before[sentence_cut.end():] if sentence_cut else before
    return len(_OPEN_SINGLE.findall(sentence)) > len(_CLOSE_SINGLE.findall(sentence))


CLAUSE = _CLAUSE_START


@dataclass(frozen=True, slots=True)
class ThreatMatch:
    score: float
    start: int
    end: int
    why: str


class ThreatRules:
    """The compiled rules; `matches(text)` gives every threat with its score and span."""

    def __init__(self) -> None:
        self._rules = [(re.compile(p, re.IGNORECASE), score, why) for p, score, why in THREAT_RULES]

    def matches(self, text: str) -> list[ThreatMatch]:
        found = []
        for rule, score, why in self._rules:
            for m in rule.finditer(text):
                if _NEGATION.search(m.group("gap") or ""):
                    continue  # "I will never hurt you"
                found.append(self._weighed(text, m.start(), m.end(), score, why))
        return found

    def score(self, text: str) -> ThreatMatch | None:
        return max(self.matches(text), key=lambda m: m.score, default=None)

    @staticmethod
    def _weighed(text: str, start: int, end: int, score: float, why: str) -> ThreatMatch:
        """Reported or quoted speech is a threat the writer makes against no one."""
        if reported(text, start, end, coordinated=True):
            return ThreatMatch(REPORTED, start, end, f"{why}, in reported or quoted speech")
        return ThreatMatch(score, start, end, why)
