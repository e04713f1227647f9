"""Generation metrics against the libraries they wrap (sacrebleu, rouge-score) and hand-computed cases."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from multihead.text_metrics import (
    ROUGE_TYPES,
    Score,
    bits_per_character,
    bleu,
    chrf,
    perplexity,
    rouge,
    rouge_n,
    rouge_tokens,
)

HYPOTHESES = [
    "The cat sat on the mat.",
    "A quick brown fox jumps over a lazy dog!",
    "Shares in the firm rose 2.5% on Friday, traders said.",
]
REFERENCES = [
    "The cat is sitting on the mat.",
    "The quick brown fox jumped over the lazy dog.",
    "Traders said shares in the company rose 2.5% on Friday.",
]
SECOND_REFERENCES = [
    "A cat sat on a mat.",
    "A fast brown fox leaps over a lazy dog.",
    "Shares rose 2.5% on Friday.",
]


def test_bleu_equals_sacrebleu_corpus_bleu() -> None:
    ours = bleu(HYPOTHESES, REFERENCES)
    assert isinstance(ours, Score)
    assert ours.score == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score, abs=1e-9)
    assert "tok:13a" in ours.signature and "case:mixed" in ours.signature and "nrefs:1" in ours.signature
    streams = bleu(HYPOTHESES, [REFERENCES, SECOND_REFERENCES])
    expected = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES, SECOND_REFERENCES]).score
    assert streams.score == pytest.approx(expected, abs=1e-9) and "nrefs:2" in streams.signature


def test_chrf_equals_sacrebleu_corpus_chrf() -> None:
    ours = chrf(HYPOTHESES, REFERENCES)
    assert ours.score == pytest.approx(sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES]).score, abs=1e-9)
    assert "nc:6" in ours.signature and "nw:0" in ours.signature


def test_hand_checked_bleu_and_chrf() -> None:
    sentences = ["the cat sat on the mat today", "a dog barked at the postman"]
    assert bleu(sentences, sentences).score == pytest.approx(100.0)
    assert chrf(sentences, sentences).score == pytest.approx(100.0)
    disjoint = ["xyz qqq", "vvv www"]
    assert bleu(disjoint, sentences).score == 0.0
    assert chrf(["#$%"], ["abc"]).score == 0.0


def test_rouge_equals_rouge_score_averaged_over_documents() -> None:
    hypotheses = ["Shares rose on Friday.\nTraders were happy.", "The cat sat on the mat."]
    references = ["Traders said shares rose on Friday.\nThe firm was happy.", "The cats are sitting on mats."]
    ours = rouge(hypotheses, references)
    for use_stemmer in (True, False):
        scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
        expected = [scorer.score(r, h) for h, r in zip(hypotheses, references, strict=True)]
        values = ours if use_stemmer else rouge(hypotheses, references, use_stemmer=False)
        for kind in ROUGE_TYPES:
            assert values[kind] == pytest.approx(100 * sum(e[kind].fmeasure for e in expected) / 2)
            assert values[f"{kind}_precision"] == pytest.approx(100 * sum(e[kind].precision for e in expected) / 2)
            assert values[f"{kind}_recall"] == pytest.approx(100 * sum(e[kind].recall for e in expected) / 2)
    assert ours["rouge1"] != rouge(hypotheses, references, use_stemmer=False)["rouge1"]  # "cats"/"sitting" stem
    only = rouge(hypotheses, references, types=("rouge2",))
    assert set(only) == {"rouge2", "rouge2_precision", "rouge2_recall"} and only["rouge2"] == ours["rouge2"]


def test_hand_computed_rouge1() -> None:
    # hypothesis "the cat sat" vs reference "the cat ran away": 2 common unigrams, P = 2/3, R = 2/4
    value = rouge(["the cat sat"], ["the cat ran away"], use_stemmer=False)
    precision, recall = 2 / 3, 2 / 4
    assert value["rouge1_precision"] == pytest.approx(100 * precision)
    assert value["rouge1_recall"] == pytest.approx(100 * recall)
    assert value["rouge1"] == pytest.approx(100 * 2 * precision * recall / (precision + recall))
    assert value["rouge2"] == pytest.approx(100 * 2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))  # "the cat" of 2 and 3


def test_rouge_n_from_cached_sentence_tokens_equals_rouge() -> None:
    sentences = ["Shares in the firm rose 2.5% on Friday.", "Traders were happy.", "The cats are sitting."]
    references = ["Traders said shares rose on Friday.\nThe firm was happy.", "Cats sat on mats, traders said."]
    tokens = [rouge_tokens(s) for s in sentences]
    assert rouge_tokens("The CATS, sitting!") == ["the", "cat", "sit"]
    for chosen in ([0, 1], [2], [0, 2]):
        hypothesis = "\n".join(sentences[i] for i in chosen)
        joined = [token for i in chosen for token in tokens[i]]
        assert joined == rouge_tokens(hypothesis)
        for n in (1, 2):
            expected = rouge([hypothesis] * 2, references, types=(f"rouge{n}",))
            ours = [rouge_n(joined, rouge_tokens(r), n=n) for r in references]
            assert sum(o["f1"] for o in ours) / 2 == pytest.approx(expected[f"rouge{n}"])
            assert sum(o["recall"] for o in ours) / 2 == pytest.approx(expected[f"rouge{n}_recall"])
    assert rouge_n([], ["a", "b"], n=2) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        rouge_n(["a"], ["a"], n=0)


def test_perplexity_and_bits_per_character() -> None:
    assert perplexity(0.0, 10) == 1.0
    assert perplexity(10 * math.log(4), 10) == pytest.approx(4.0)
    assert bits_per_character(100 * math.log(2), 100) == pytest.approx(1.0)
    assert bits_per_character(3.0, 2) == pytest.approx(1.5 / math.log(2))
    with pytest.raises(ValueError, match="n_tokens must be a positive integer, got 0"):
        perplexity(1.0, 0)
    with pytest.raises(ValueError, match="total_nll_nats must be a finite number"):
        bits_per_character(float("nan"), 3)


@pytest.mark.parametrize("metric", [bleu, chrf, rouge])
def test_mismatched_lengths_name_both(metric: object) -> None:
    with pytest.raises(ValueError, match="3 hypotheses but 2 references"):
        metric(HYPOTHESES, REFERENCES[:2])  # type: ignore[operator]
    with pytest.raises(ValueError, match="no hypotheses"):
        metric([], [])  # type: ignore[operator]


def test_mismatched_reference_stream_is_named() -> None:
    with pytest.raises(ValueError, match="3 hypotheses but 1 reference stream 1"):
        bleu(HYPOTHESES, [REFERENCES, SECOND_REFERENCES[:1]])
    with pytest.raises(ValueError, match="one reference per document"):
        rouge(HYPOTHESES, [REFERENCES, SECOND_REFERENCES])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="types must name some of"):
        rouge(HYPOTHESES, REFERENCES, types=("rouge3",))
