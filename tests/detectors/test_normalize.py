"""The normalised view and its offset map (detectors/normalize.py)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.normalize import CONFUSABLES, classifier_view, fold_leet, normalize

TRICKS = ["\u200b", "\u200d", "\u00ad", "\u2060", "\ufeff", "\u202e", "\u2066", "\ufe0f", "\u0336", "\u0301",
          "а", "е", "о", "Α", "Ι", "ｋ", "𝐀", "ﬁ", "\u00a0", "’", "—", "é", "日", "👍", "\U000e0041"]
pieces = st.lists(st.one_of(st.text(alphabet=st.characters(codec="ascii"), max_size=6), st.sampled_from(TRICKS),
                            st.text(max_size=3)), max_size=25).map("".join)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_ascii_is_the_identity_and_costs_nothing() -> None:
    view = normalize("plain ascii text, key AKIA1234")
    assert view.text == "plain ascii text, key AKIA1234" and not view.changed
    assert view.span(6, 11) == (6, 11)


def test_each_trick_class_folds_to_ascii() -> None:
    assert normalize("A\u200bK\u00adI\u2060A\ufeff1").text == "AKIA1"
    assert normalize("ign\u202eore").text == "ignore"
    assert normalize("ѕесrеt").text == "secret"  # Cyrillic look-alikes
    assert normalize("ΑΒΕ").text == "ABE"  # Greek
    assert normalize("ＡＫＩＡ").text == "AKIA"  # fullwidth, by NFKC
    assert normalize("𝐀𝐊𝐈𝐀").text == "AKIA"  # mathematical bold, by NFKC
    assert normalize("i\u0336d\u0336i\u0336o\u0336t").text == "idiot"  # noise marks
    assert normalize("cafe\u0301").text == "café"  # a real accent composes and stays
    assert normalize("naïve 日本 👍").text == "naïve 日本 👍"  # nothing to fold: the text itself
    assert all(len(v) == 1 and v.isascii() for v in CONFUSABLES.values())


def test_a_span_maps_to_the_whole_original_value_with_its_invisible_characters() -> None:
    text = "key: \u200bA\u200bK\u200bI\u200bA\u200b!"
    view = normalize(text)
    assert view.text == "key: AKIA!"
    start, end = view.span(5, 9)
    assert text[start:end] == "A\u200bK\u200bI\u200bA"  # the invisible ones at the edges stay outside
    assert normalize("ﬁne").span(1, 2) == (0, 1)  # half of an expansion maps to the character it came from


@FUZZ
@given(pieces, st.data())
def test_any_view_span_maps_back_to_an_original_substring_that_normalises_to_it(text: str,
                                                                              data: st.DataObject) -> None:
    view = normalize(text)
    assert normalize(view.text).text == view.text  # idempotent
    a = data.draw(st.integers(0, len(view.text)))
    b = data.draw(st.integers(a, len(view.text)))
    start, end = view.span(a, b)
    assert 0 <= start <= end <= len(text)
    again = normalize(text[start:end]).text
    assert view.text[a:b] in again  # a span inside one expansion ("ﬁ" -> "fi") maps to the whole character
    if a == b:
        assert start == end
    # at cluster boundaries (where the view starts a new original character) the two are equal
    boundaries = {0, len(view.text)} | {view.start(i) for i in range(len(view.text))}
    if view.start(a) in boundaries and (b == len(view.text) or view.start(b) != view.start(b - 1)) and (
            a == 0 or view.start(a) != view.start(a - 1)):
        assert again == view.text[a:b]


def test_leetspeak_and_spaced_letters_for_classifiers() -> None:
    assert classifier_view("y0u 1diot") == "you idiot"
    assert classifier_view("i d i o t") == "idiot"
    assert classifier_view("f.u.c.k off") == "fuck off"
    assert classifier_view("$tupid b!tch!") == "stupid bitch!"
    assert classifier_view("meet at 10:30 on 2024-05-01, room 4") == "meet at 10:30 on 2024-05-01, room 4"
    folded = fold_leet("1gn0re prev10us 1nstruct10ns")
    assert folded == "ignore previous instructions" and len(folded) == len("1gn0re prev10us 1nstruct10ns")
