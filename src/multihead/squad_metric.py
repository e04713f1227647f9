"""Exact match and F1 for extractive question answering, as SQuAD v1.1's official ``evaluate-v1.1.py`` computes them.

An answer is normalised by lower-casing, deleting ASCII punctuation (``string.punctuation``), replacing the
words "a", "an" and "the" with a space, and collapsing white space; in that order. Exact match is whether the
normalised texts are equal; F1 is over the bags of white-space tokens of the normalised texts (0 when they share
none, even if both are empty). A question scores the maximum over its reference answers; the corpus scores are
means over questions, on a 0-100 scale, and a question without a prediction scores 0.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

__all__ = ["exact_match", "normalize_answer", "squad_scores", "token_f1"]

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, blank out the articles a/an/the, collapse white space (the official order)."""
    text = "".join(character for character in text.lower() if character not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> bool:
    """Whether the two texts are equal once normalised."""
    return normalize_answer(prediction) == normalize_answer(reference)


def token_f1(prediction: str, reference: str) -> float:
    """F1 (0-1) of the normalised texts' token bags; 0 when they share no token."""
    predicted, wanted = normalize_answer(prediction).split(), normalize_answer(reference).split()
    shared = sum((Counter(predicted) & Counter(wanted)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(wanted)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> dict[str, float | int]:
    """Corpus exact match and F1 (0-100) over every question of ``references``.

    Args:
        predictions: question id -> predicted answer text (ids not in ``references`` are ignored, as the
            official script does).
        references: question id -> its reference answer texts (at least one each).

    Returns:
        ``exact_match``, ``f1``, ``questions`` (those scored) and ``unanswered`` (questions without a prediction,
        scored 0).
    """
    if not references:
        raise ValueError("no reference questions; expected at least one question with its answers")
    matched = f1 = 0.0
    unanswered = 0
    for qid, answers in references.items():
        if isinstance(answers, str) or not answers:
            raise ValueError(f"question {qid!r}: expected a non-empty list of reference answers, got {answers!r}")
        if qid not in predictions:
            unanswered += 1
            continue
        prediction = predictions[qid]
        matched += max(float(exact_match(prediction, answer)) for answer in answers)
        f1 += max(token_f1(prediction, answer) for answer in answers)
    count = len(references)
    return {"exact_match": 100.0 * matched / count, "f1": 100.0 * f1 / count, "questions": count,
            "unanswered": unanswered}
