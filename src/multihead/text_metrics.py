"""Text-generation metrics: BLEU and chrF (sacrebleu), ROUGE (rouge-score), perplexity and bits per character.

BLEU and chrF are corpus-level scores with sacrebleu's defaults (13a tokenisation, cased; chrF with character
6-grams, beta 2), returned with sacrebleu's signature string so that a reported figure says how it was made.
ROUGE is the mean over documents of rouge-score's per-document precision, recall and F1. Every score is on a
0-100 scale (ROUGE too, as summarisation papers report it).
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from multihead.errors import ConfigError

__all__ = ["ROUGE_TYPES", "Score", "bits_per_character", "bleu", "chrf", "perplexity", "rouge", "rouge_n",
           "rouge_tokens"]

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
"""``rougeL`` is the longest common subsequence of the whole texts (line breaks ignored); ``rougeLsum`` is the
summary-level LCS over sentences, one a line (Lin 2004's ROUGE-L for multi-sentence summaries, and what most
summarisation papers report as ROUGE-L). :func:`rouge` reports both; write a summary one sentence a line for
``rougeLsum`` to mean what it should."""


@dataclass(frozen=True)
class Score:
    """A corpus-level score and sacrebleu's signature of how it was computed.

    Attributes:
        score: the value, 0-100.
        signature: e.g. ``"nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"``.
    """

    score: float
    signature: str

    def __str__(self) -> str:
        return f"{self.score:.2f} ({self.signature})"


def _reference_streams(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]],
                       ) -> tuple[list[str], list[list[str]]]:
    """Check the inputs; return the hypotheses and sacrebleu's reference streams (one list per reference set)."""
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise TypeError("hypotheses and references must be sequences of strings, got a single str; wrap it in a list")
    hypotheses = list(hypotheses)
    if not hypotheses:
        raise ConfigError("no hypotheses; expected at least one hypothesis and its reference")
    if all(isinstance(reference, str) for reference in references):
        streams = [list(references)]  # type: ignore[arg-type]
    else:
        streams = [list(stream) for stream in references]
    for index, stream in enumerate(streams):
        if len(stream) != len(hypotheses):
            which = "references" if len(streams) == 1 else f"reference stream {index}"
            raise ConfigError(f"{len(hypotheses)} hypotheses but {len(stream)} {which}; expected one reference per "
                              f"hypothesis")
        for position, text in enumerate(stream):
            if not isinstance(text, str):
                raise TypeError(f"reference {position} must be a str, got {type(text).__name__}")
    for position, text in enumerate(hypotheses):
        if not isinstance(text, str):
            raise TypeError(f"hypothesis {position} must be a str, got {type(text).__name__}")
    return hypotheses, streams


def bleu(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]) -> Score:
    """Corpus BLEU with sacrebleu's defaults (13a tokenisation, cased, exponential smoothing).

    Args:
        hypotheses: one detokenised output per segment.
        references: one reference per hypothesis, or a list of reference streams (each one a reference per
            hypothesis), as ``sacrebleu.corpus_bleu`` takes them.

    Returns:
        BLEU (0-100) with sacrebleu's signature.
    """
    from sacrebleu.metrics import BLEU

    hypotheses, streams = _reference_streams(hypotheses, references)
    metric = BLEU()
    return Score(float(metric.corpus_score(hypotheses, streams).score), str(metric.get_signature()))


def chrf(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]) -> Score:
    """Corpus chrF with sacrebleu's defaults (character 6-grams, no word n-grams, beta 2); arguments as :func:`bleu`."""
    from sacrebleu.metrics import CHRF

    hypotheses, streams = _reference_streams(hypotheses, references)
    metric = CHRF()
    return Score(float(metric.corpus_score(hypotheses, streams).score), str(metric.get_signature()))


def rouge(hypotheses: Sequence[str], references: Sequence[str], *, use_stemmer: bool = True,
          types: Sequence[str] = ROUGE_TYPES) -> dict[str, float]:
    """ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum, averaged over documents, 0-100.

    rouge-score's tokenizer lower-cases and keeps letters and digits only; with ``use_stemmer`` words are Porter
    stemmed (the data README's convention for the BBC summaries). See :data:`ROUGE_TYPES` for ``rougeL`` versus
    ``rougeLsum``: separate a multi-sentence text's sentences with ``"\\n"``.

    Args:
        hypotheses: one system summary per document.
        references: one reference summary per document.
        use_stemmer: Porter-stem words before matching.
        types: which of :data:`ROUGE_TYPES` to compute (fewer is faster; ``rougeL`` is the slowest).

    Returns:
        ``{"rouge1": F1, "rouge1_precision": ..., "rouge1_recall": ..., "rouge2": ..., "rougeL": ...,
        "rougeLsum": ..., ...}``: each the mean over documents.
    """
    from rouge_score import rouge_scorer

    hypotheses, streams = _reference_streams(hypotheses, references)
    if len(streams) != 1:
        raise ValueError(f"rouge takes one reference per document, got {len(streams)} reference streams")
    kinds = [types] if isinstance(types, str) else list(types)
    unknown = [kind for kind in kinds if kind not in ROUGE_TYPES]
    if unknown or not kinds:
        raise ValueError(f"types must name some of {ROUGE_TYPES}, got {types!r}")
    scorer = rouge_scorer.RougeScorer(kinds, use_stemmer=use_stemmer)
    totals = {f"{kind}{part}": 0.0 for kind in kinds for part in ("", "_precision", "_recall")}
    for hypothesis, reference in zip(hypotheses, streams[0], strict=True):
        scores = scorer.score(reference, hypothesis)  # rouge-score takes (target, prediction)
        for kind in kinds:
            totals[kind] += scores[kind].fmeasure
            totals[f"{kind}_precision"] += scores[kind].precision
            totals[f"{kind}_recall"] += scores[kind].recall
    return {name: 100.0 * total / len(hypotheses) for name, total in totals.items()}


@functools.lru_cache(maxsize=2)
def _rouge_tokenizer(use_stemmer: bool) -> Any:
    from rouge_score.tokenizers import DefaultTokenizer

    return DefaultTokenizer(use_stemmer=use_stemmer)


def rouge_tokens(text: str, *, use_stemmer: bool = True) -> list[str]:
    """rouge-score's tokens of ``text``: lower-cased runs of letters and digits, Porter-stemmed beyond 3 characters.

    Tokens never cross a non-alphanumeric character, so the tokens of ``"\n".join(sentences)`` are the
    concatenation of each sentence's tokens: tokenize sentences once to score many selections of them.
    """
    return list(_rouge_tokenizer(use_stemmer).tokenize(text))


def rouge_n(hypothesis: Sequence[str], reference: Sequence[str], *, n: int = 2) -> dict[str, float]:
    """ROUGE-N of one document from tokens (see :func:`rouge_tokens`), as rouge-score computes it, 0-100.

    Returns:
        ``{"precision": ..., "recall": ..., "f1": ...}``; 0 where a side has no n-grams.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    predicted = Counter(tuple(hypothesis[i:i + n]) for i in range(len(hypothesis) - n + 1))
    target = Counter(tuple(reference[i:i + n]) for i in range(len(reference) - n + 1))
    overlap = sum(min(count, predicted[gram]) for gram, count in target.items())
    precision = overlap / max(sum(predicted.values()), 1)
    recall = overlap / max(sum(target.values()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"precision": 100.0 * precision, "recall": 100.0 * recall, "f1": 100.0 * f1}


def _check_total(total_nll_nats: float, count: int, unit: str) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count <= 0:
        raise ValueError(f"n_{unit} must be a positive integer, got {count!r}")
    if not math.isfinite(total_nll_nats) or total_nll_nats < 0:
        raise ValueError(f"total_nll_nats must be a finite number >= 0 (a summed negative log-likelihood), "
                         f"got {total_nll_nats!r}")


def perplexity(total_nll_nats: float, n_tokens: int) -> float:
    """``exp(total / n_tokens)``: the perplexity of a summed negative log-likelihood (natural log) over tokens."""
    _check_total(total_nll_nats, n_tokens, "tokens")
    return math.exp(total_nll_nats / n_tokens)


def bits_per_character(total_nll_nats: float, n_characters: int) -> float:
    """``total / (n_characters * ln 2)``: a summed negative log-likelihood in nats as bits per character."""
    _check_total(total_nll_nats, n_characters, "characters")
    return total_nll_nats / (n_characters * math.log(2))
