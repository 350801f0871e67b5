"""A labeled PII test set made with Faker (seeded): varied templates, every inserted value's offsets known.

Shared by tests/detectors/test_pii.py (recall/precision floors) and bench/detectors.py (speed and
agreement with presidio), so both measure the same texts.

Values are realistic rather than merely random: Faker's credit cards are Luhn-valid and its IBANs
carry valid check digits; its `ssn()` avoids the ranges the SSA never issues. Phone numbers are
drawn in several national and international formats from numbering plans that exist (real US
area codes, Faker's GB/FR/DE numbers; each kept only when libphonenumber calls it valid): Faker's
own US `phone_number()` picks unassigned area codes about half the time, which no validator,
and no person, would take for a phone number. Negatives are the shapes LLM traffic is full of:
order and ticket numbers, timestamps, versions, technical tokens and model names.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from faker import Faker

Truth = tuple[str, int, int]  # (entity, start, end)


@dataclass(frozen=True)
class Sample:
    text: str
    truth: tuple[Truth, ...]
    template: int  # index into TEMPLATES, to trace a miss back to its wording


POSITIVE = [
    "Hi, I'm {PERSON} and my email is {EMAIL_ADDRESS}.",
    "Please call me at {PHONE_NUMBER} tomorrow morning.",
    "You can reach {PERSON} on {PHONE_NUMBER} or at {EMAIL_ADDRESS}.",
    "My card number is {CREDIT_CARD}, it expires next year.",
    "Charge {CREDIT_CARD} for the annual plan please.",
    "My social security number is {US_SSN}.",
    "SSN: {US_SSN}",
    "Wire the deposit to IBAN {IBAN_CODE} by the end of the week.",
    "Refunds go to {IBAN_CODE}.",
    "The server at {IP_ADDRESS} keeps timing out.",
    "Requests from {IP_ADDRESS} were blocked after 20 failed logins.",
    "{PERSON} moved to {LOCATION} last year and started a bakery.",
    "Can you write a reference letter for {PERSON}?",
    "Send the signed contract to {PERSON} at {EMAIL_ADDRESS}.",
    "My checking account number is {US_BANK_NUMBER}.",
    "Ship it to {PERSON} in {LOCATION}. Phone: {PHONE_NUMBER}.",
    "Summarize this message from {PERSON}: the launch slipped to next quarter.",
    "Dear {PERSON}, thank you for your order #{ORDER}.",
    "Customer {PERSON} ({EMAIL_ADDRESS}) disputes the charge on card {CREDIT_CARD}.",
    "Logins from {IP_ADDRESS} used the account {EMAIL_ADDRESS} after midnight.",
    "I live in {LOCATION} and work remotely for a startup.",
    "{PERSON} said the invoice was paid; her number is {PHONE_NUMBER}.",
    "text {PHONE_NUMBER} if the delivery is late",
    "contact: {EMAIL_ADDRESS}",
    "Patient {PERSON}, SSN {US_SSN}, was seen on Tuesday.",
    "Ticket {TICKET}: {PERSON} cannot log in from {IP_ADDRESS}.",
    "Name: {PERSON}\nEmail: {EMAIL_ADDRESS}\nPhone: {PHONE_NUMBER}\nCity: {LOCATION}",
    '{"name": "{PERSON}", "email": "{EMAIL_ADDRESS}", "last_ip": "{IP_ADDRESS}"}',
    "my ssn is {US_SSN} and my card is {CREDIT_CARD}, can you check my credit score?",
    "ssh deploy@{IP_ADDRESS} -p 2222 and tail the access log",
    "From: {PERSON} <{EMAIL_ADDRESS}>\nSubject: invoice for order {ORDER}",
]
NEGATIVE = [
    "Your order #{ORDER} has shipped and should arrive in 3-5 business days.",
    "Order {ORDER} was refunded to the original payment method.",
    "Ticket {TICKET} was closed after the fix was deployed.",
    "Upload the logs to S3 and restart the EC2 instances in the K8s cluster.",
    "We benchmarked C4 and T4 instances; the H100 was 3x faster than the A100.",
    "Upgrade to version {VERSION} before Friday's release.",
    "The job started at {TIMESTAMP} and finished 42 minutes later.",
    "Compare {MODEL} with {MODEL} on this prompt and explain the difference.",
    "Invoice INV-2024-{DIGITS5} totals $1,234.56 including tax.",
    "Set the timeout to 30000 ms and the retries to 5.",
    "Listen on port 8080 and forward to localhost:11434.",
    "can you explain how attention works in transformers?",
    "Build 20240501.3 failed on the ARM64 runner, see PR #{DIGITS4}.",
    "Python 3.11.4 and Node 20.11.1 are required; pin numpy to 1.26.4.",
    "Error 0x80070005 occurred while installing update {VERSION}.",
    "The tracking number for case {ORDER} is {TRACKING}.",
    "Write a haiku about autumn leaves and rain.",
    "Use {MODEL} for summaries and keep temperature at 0.2.",
    "log line: ts={EPOCH} level=info msg=request served in 12 ms",
    "Rewrite this paragraph so it sounds more formal, but keep it short.",
]
TEMPLATES = POSITIVE + NEGATIVE

US_AREA_CODES = ("212", "213", "305", "312", "415", "503", "512", "617", "646", "702", "713", "202", "206",
                 "303", "404", "480", "602", "614", "718", "818", "919", "971")
US_FORMATS = ("({a}) {e}-{l}", "{a}-{e}-{l}", "{a}.{e}.{l}", "+1 {a} {e} {l}", "+1-{a}-{e}-{l}", "{a} {e} {l}")
MODELS = ("gpt-4o-mini", "Llama 3.1 8B", "Mistral 7B", "Claude 3.5 Sonnet", "Qwen2.5-72B", "Gemma 2 9B",
          "Phi-3-mini", "Mixtral 8x7B")
FORMATS_IBAN = ("en_GB", "de_DE", "fr_FR", "es_ES", "nl_NL", "it_IT")


class _Values:
    """One seeded source of every slot's values, so a seed fixes the whole set."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fakers = {loc: Faker(loc) for loc in ("en_US", *FORMATS_IBAN)}
        for i, fake in enumerate(self.fakers.values()):
            fake.seed_instance(seed * 100 + i)
        self.us = self.fakers["en_US"]

    def digits(self, n: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(n))

    def value(self, slot: str) -> str:
        return getattr(self, slot.lower())()  # type: ignore[no-any-return]

    def person(self) -> str:
        if self.rng.random() < 0.15:
            return f"{self.us.first_name()} {self.us.last_name()}-{self.us.last_name()}"
        return f"{self.us.first_name()} {self.us.last_name()}"

    def email_address(self) -> str:
        return self.rng.choice((self.us.email, self.us.company_email, self.us.free_email))()

    def phone_number(self) -> str:
        import phonenumbers

        us = self.rng.random() < 0.6
        locale, region = ("en_US", "US") if us else self.rng.choice((("en_GB", "GB"), ("fr_FR", "FR"), ("de_DE", "DE")))
        while True:
            if us:
                exchange = self.rng.choice("23456789") + self.digits(2)
                number = self.rng.choice(US_FORMATS).format(a=self.rng.choice(US_AREA_CODES), e=exchange,
                                                            l=self.digits(4))
            else:
                number = self.fakers[locale].phone_number()
            try:
                if phonenumbers.is_valid_number(phonenumbers.parse(number, region)):
                    return number
            except phonenumbers.NumberParseException:
                continue

    def credit_card(self) -> str:
        card_type = self.rng.choice(("visa16", "mastercard", "amex", "discover"))
        number = self.us.credit_card_number(card_type=card_type)
        style = self.rng.random()
        if style < 0.4:
            return number
        sep = " " if style < 0.8 else "-"
        groups = (4, 6, 5) if len(number) == 15 else (4, 4, 4, 4)
        parts, at = [], 0
        for size in groups:
            parts.append(number[at:at + size])
            at += size
        return sep.join(parts)

    def us_ssn(self) -> str:
        ssn = self.us.ssn()
        return ssn if self.rng.random() < 0.8 else ssn.replace("-", " ")

    def iban_code(self) -> str:
        iban = self.fakers[self.rng.choice(FORMATS_IBAN)].iban()
        if self.rng.random() < 0.5:
            return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        return iban

    def ip_address(self) -> str:
        return self.rng.choice((self.us.ipv4_public, self.us.ipv4_private, self.us.ipv6))()

    def location(self) -> str:
        return self.rng.choice((self.us.state, self.us.country, self.us.city))()

    def us_bank_number(self) -> str:
        return self.digits(self.rng.randint(8, 12))

    # negatives: never labeled
    def order(self) -> str:
        return self.rng.choice((f"{self.digits(3)}-{self.digits(7)}", self.digits(10), f"A{self.digits(7)}",
                                f"{self.digits(4)}-{self.digits(4)}-{self.digits(4)}"))

    def ticket(self) -> str:
        return self.rng.choice((self.digits(10), f"INC{self.digits(7)}", f"JIRA-{self.digits(4)}"))

    def version(self) -> str:
        return self.rng.choice((f"{self.rng.randint(1, 12)}.{self.rng.randint(0, 9)}.{self.rng.randint(0, 20)}",
                                f"{self.rng.randint(1, 12)}.{self.rng.randint(0, 9)}.{self.rng.randint(0, 9)}."
                                f"{self.rng.randint(1, 99)}",
                                f"v{self.rng.randint(1, 3)}.{self.rng.randint(0, 30)}.{self.rng.randint(0, 9)}"))

    def timestamp(self) -> str:
        moment = self.us.date_time_between(start_date="-2y")
        return self.rng.choice((moment.strftime("%Y-%m-%dT%H:%M:%SZ"), moment.strftime("%Y-%m-%d %H:%M:%S"),
                                moment.strftime("%Y%m%d%H%M%S"), str(int(moment.timestamp()))))

    def epoch(self) -> str:
        return str(int(self.us.date_time_between(start_date="-2y").timestamp()))

    def model(self) -> str:
        return self.rng.choice(MODELS)

    def tracking(self) -> str:
        return f"1Z{self.digits(3)}AA{self.digits(10)}"

    def digits4(self) -> str:
        return self.digits(4)

    def digits5(self) -> str:
        return self.digits(5)


LABELED_SLOTS = frozenset({"PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE",
                           "IP_ADDRESS", "LOCATION", "US_BANK_NUMBER"})
_SLOT = re.compile(r"\{([A-Z_0-9]+)\}")


def fill(template: str, values: _Values) -> tuple[str, tuple[Truth, ...]]:
    text, truth, at = "", [], 0
    for match in _SLOT.finditer(template):
        text += template[at:match.start()]
        slot = match.group(1)
        value = values.value(slot)
        if slot in LABELED_SLOTS:
            truth.append((slot, len(text), len(text) + len(value)))
        text += value
        at = match.end()
    return text + template[at:], tuple(truth)


def labeled_set(n: int = 400, seed: int = 7, negative_share: float = 0.3) -> list[Sample]:
    """`n` texts, about `negative_share` of them from negative templates (no PII at all)."""
    values = _Values(seed)
    samples = []
    for _ in range(n):
        pool = NEGATIVE if values.rng.random() < negative_share else POSITIVE
        template = values.rng.choice(pool)
        text, truth = fill(template, values)
        samples.append(Sample(text, truth, TEMPLATES.index(template)))
    return samples


def score(samples: list[Sample], found: list[list[tuple[str, int, int]]],
          labels: frozenset[str] = LABELED_SLOTS) -> dict[str, dict[str, float]]:
    """Per-entity recall and precision; a finding matches a truth of the same entity it overlaps.

    Only entities in `labels` are scored (the set labels only these), so a finding of another
    type (e.g. a CRYPTO) counts as neither.
    """
    counts: dict[str, dict[str, int]] = {e: {"truth": 0, "hit": 0, "found": 0, "correct": 0} for e in sorted(labels)}
    for sample, findings in zip(samples, found, strict=True):
        for label, start, end in sample.truth:
            counts[label]["truth"] += 1
            counts[label]["hit"] += any(f[0] == label and f[1] < end and start < f[2] for f in findings)
        for label, start, end in findings:
            if label not in counts:
                continue
            counts[label]["found"] += 1
            counts[label]["correct"] += any(t[0] == label and t[1] < end and start < t[2] for t in sample.truth)
    return {
        e: {"truth": c["truth"], "found": c["found"],
            "recall": c["hit"] / c["truth"] if c["truth"] else 1.0,
            "precision": c["correct"] / c["found"] if c["found"] else 1.0}
        for e, c in counts.items()
    }
