"""Exact match and F1 as SQuAD v1.1's official script computes them: its normalisation, in its order, and
hand-computed values."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead.squad_metric import exact_match, normalize_answer, squad_scores, token_f1


@pytest.mark.parametrize(("text", "expected"), [
    ("The  Denver Broncos!", "denver broncos"),
    ("An apple, a day", "apple day"),
    ("theater anthem", "theater anthem"),  # articles only as whole words
    ("a.b", "ab"),  # punctuation goes before articles: "a.b" -> "ab", not "b"
    ("U.S.", "us"),
    ("Levi's\tStadium\n", "levis stadium"),
    ("\u201cHello\u201d \u2013 world", "\u201chello\u201d \u2013 world"),  # only ASCII punctuation is removed
    ("The", ""),
    ("THE END", "end"),  # lower-cased first, so a capitalised article goes too
])
def test_normalisation_follows_the_official_rules(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_exact_match_and_f1_by_hand() -> None:
    assert exact_match("the Denver Broncos", "Denver Broncos.")
    assert not exact_match("Denver", "Denver Broncos")
    assert token_f1("Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)  # P 2/3, R 1
    assert token_f1("the the cat cat cat", "cat cat") == pytest.approx(0.8)  # bags: 2 shared of 3 and of 2
    assert token_f1("Broncos Denver", "Denver Broncos") == 1.0  # order does not matter
    assert token_f1("Carolina Panthers", "Denver Broncos") == 0.0
    # an answer of articles only: exact match (both normalise to ""), but F1 0 (the script's num_same == 0 rule)
    assert exact_match("the", "a") and token_f1("the", "a") == 0.0


def test_corpus_scores_take_the_best_reference_and_count_missing_answers() -> None:
    references = {"q1": ["Denver Broncos", "the Broncos"], "q2": ["Santa Clara, California", "Levi's Stadium"],
                  "q3": ["February 7, 2016"]}
    predictions = {"q1": "Broncos", "q2": "Levi's Stadium in Santa Clara", "extra": "ignored"}
    # q1: exact with "the Broncos"; q2: F1 max(1/2, 4/7) = 4/7, no exact; q3: unanswered, 0
    scores = squad_scores(predictions, references)
    assert scores["exact_match"] == pytest.approx(100 / 3)
    assert scores["f1"] == pytest.approx(100 * (1 + 4 / 7 + 0) / 3)
    assert (scores["questions"], scores["unanswered"]) == (3, 1)
    with pytest.raises(ValueError, match="non-empty list of reference answers"):
        squad_scores({"q": "x"}, {"q": []})


WORDS = st.lists(st.sampled_from(["the", "a", "an", "cat", "Cat", "dog,", "U.S.", "ran", "theory", "!"]),
                 max_size=6).map(" ".join)


@settings(deadline=None, max_examples=150)
@given(WORDS, WORDS)
def test_f1_against_bag_arithmetic(prediction: str, reference: str) -> None:
    predicted, wanted = Counter(normalize_answer(prediction).split()), Counter(normalize_answer(reference).split())
    shared = sum(min(predicted[word], wanted[word]) for word in predicted)
    expected = 0.0 if shared == 0 else 2 * shared / (sum(predicted.values()) + sum(wanted.values()))
    assert token_f1(prediction, reference) == pytest.approx(expected)
    assert token_f1(prediction, reference) == pytest.approx(token_f1(reference, prediction))
    if exact_match(prediction, reference) and normalize_answer(reference):
        assert token_f1(prediction, reference) == pytest.approx(1.0)
