"""Sampling: seeds, the distribution drawn from, top-k / top-p sets, repetition penalty."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import BOS, VOCAB, next_token_logits, scored_tokens, sequence_log_prob, tiny_lm, tiny_seq2seq

from multihead.generation import GenerationConfig, generate
from multihead.generation.sampling import penalise_repetitions, top_k_filter, top_p_filter

PROMPTS = [[3, 4, 5], [6], [7, 8, 9, 10]]


def sampled(config: GenerationConfig, model: torch.nn.Module | None = None) -> list[list[list[int]]]:
    model = model or tiny_lm()
    return [[h.tokens for h in hyps] for hyps in generate(model, PROMPTS, config)]  # type: ignore[arg-type]


def test_a_seed_repeats_a_different_seed_differs_and_the_global_rng_is_untouched() -> None:
    model = tiny_lm()
    config = GenerationConfig(max_new_tokens=8, do_sample=True, seed=7, num_return_sequences=3)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = sampled(config, model)
    assert torch.equal(torch.rand(3), expected_next)  # the global generator did not move
    assert sampled(config, model) == first
    assert sampled(config.replace(seed=8), model) != first
    assert len({tuple(tokens) for hyps in first for tokens in hyps}) > 3  # samples differ from each other


def test_samples_are_scored_by_the_models_untempered_log_probs_and_sorted() -> None:
    model = tiny_seq2seq()
    config = GenerationConfig(max_new_tokens=6, do_sample=True, seed=1, num_return_sequences=4, temperature=1.7,
                              eos_id=3, bos_id=BOS)
    for source, hyps in zip(PROMPTS, generate(model, PROMPTS, config), strict=True):
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            assert h.score == h.log_prob
            assert h.log_prob == pytest.approx(sequence_log_prob(model, source, scored_tokens(h.tokens, h.stop_token)),
                                               abs=1e-4)


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(1.0, None, None), (0.7, None, None), (1.3, 5, None),
                                                             (1.0, None, 0.6)])
def test_first_tokens_follow_the_filtered_distribution(temperature: float, top_k: int | None, top_p: float | None
                                                       ) -> None:
    """4000 one-token samples: their frequencies match softmax(filtered logits / T) within sampling noise."""
    model = tiny_lm(std=0.1)  # a flat distribution, so every token has a visible share
    draws = 4000
    config = GenerationConfig(max_new_tokens=1, do_sample=True, seed=0, num_return_sequences=draws,
                              temperature=temperature, top_k=top_k, top_p=top_p)
    tokens = [h.tokens[0] for h in generate(model, [[3, 4]], config)[0]]
    frequencies = torch.bincount(torch.tensor(tokens), minlength=VOCAB).double() / draws
    logits = next_token_logits(model, [3, 4], []).double() / temperature
    probs = logits.softmax(-1)
    allowed = torch.ones(VOCAB, dtype=torch.bool)
    order = probs.argsort(descending=True)
    if top_k is not None:
        allowed[order[top_k:]] = False
    if top_p is not None:
        mass_before = probs[order].cumsum(0) - probs[order]
        allowed[order[mass_before >= top_p]] = False
    expected = torch.where(allowed, probs, 0.0)
    expected = expected / expected.sum()
    assert 0.5 * (frequencies - expected).abs().sum() < 0.04  # total variation; noise is about 0.02
    assert bool((frequencies[~allowed] == 0).all())


@settings(deadline=None, max_examples=6)
@given(seed=st.integers(0, 1000), top_k=st.sampled_from([None, 1, 2, 4]), top_p=st.sampled_from([None, 0.3, 0.8]),
       temperature=st.sampled_from([0.5, 1.0, 2.0]), seq2seq=st.booleans())
def test_sampled_tokens_stay_in_the_top_k_and_top_p_sets_of_the_model(
    seed: int, top_k: int | None, top_p: float | None, temperature: float, seq2seq: bool
) -> None:
    """Every sampled token is allowed by the model's own next-token distribution, recomputed in full."""
    model = tiny_seq2seq() if seq2seq else tiny_lm()
    config = GenerationConfig(max_new_tokens=5, do_sample=True, seed=seed, num_return_sequences=4, top_k=top_k,
                              top_p=top_p, temperature=temperature, bos_id=BOS)
    for source, hyps in zip(PROMPTS, generate(model, PROMPTS, config), strict=True):
        for h in hyps:
            for step, token in enumerate(h.tokens):
                probs = (next_token_logits(model, source, h.tokens[:step]).double() / temperature).softmax(-1)
                rank = int((probs > probs[token]).sum())  # tokens strictly more likely than the one drawn
                if top_k is not None:
                    assert rank < top_k
                if top_p is not None:
                    assert float(probs[probs > probs[token]].sum()) < top_p + 1e-6


@settings(deadline=None, max_examples=25)
@given(logits=st.lists(st.floats(-5, 5), min_size=2, max_size=12), p=st.floats(0.01, 0.99))
def test_top_p_filter_keeps_the_smallest_nucleus(logits: list[float], p: float) -> None:
    """The kept tokens are the most likely ones, hold at least ``p`` of the mass, and without their least
    likely member they would not."""
    row = torch.tensor([logits], dtype=torch.float64)
    kept = top_p_filter(row, p)[0] > float("-inf")
    probs = row[0].softmax(-1)
    assert bool(kept.any())
    if not bool(kept.all()):
        assert float(probs[kept].min()) >= float(probs[~kept].max()) - 1e-12
    assert float(probs[kept].sum()) >= p - 1e-9
    assert float(probs[kept].sum() - probs[kept].min()) < p + 1e-9
    assert int(top_k_filter(row, 1)[0].isfinite().sum()) == int((row[0] == row[0].max()).sum())


def test_repetition_penalty_follows_the_ctrl_rule() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, -1.0, 0.5]])
    history = torch.tensor([[0, 1, 1, 4, 2]])
    mask = torch.tensor([[True, True, True, True, False]])  # token 2 is padding: not seen
    out = penalise_repetitions(logits, history, mask, 2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, -1.0, 0.25]]
    assert penalise_repetitions(logits, history, None, 1.0) is logits


def test_greedy_with_repetition_penalty_equals_a_plain_loop() -> None:
    model = tiny_lm()
    penalty, prompt = 1.8, [3, 4, 5]
    config = GenerationConfig(max_new_tokens=8, repetition_penalty=penalty)
    result = generate(model, [prompt], config)[0][0]
    tokens: list[int] = []
    for _ in range(8):
        logits = next_token_logits(model, prompt, tokens).tolist()
        for seen in set(prompt + tokens):
            logits[seen] = logits[seen] / penalty if logits[seen] > 0 else logits[seen] * penalty
        tokens.append(max(range(VOCAB), key=lambda index: logits[index]))
    assert result.tokens == tokens
    assert tokens != generate(model, [prompt], config.replace(repetition_penalty=1.0))[0][0].tokens
    assert result.log_prob == pytest.approx(sequence_log_prob(model, prompt, tokens), abs=1e-4)  # unpenalised
