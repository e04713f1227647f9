"""Greedy decoding against a plain uncached reference loop; scores; cache use; finished rows leave the batch."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import BOS, EOS, VOCAB, reference_greedy, scored_tokens, sequence_log_prob, tiny_lm, tiny_seq2seq

from multihead import DecoderLM, EncoderDecoder
from multihead.generation import GenerationConfig, generate

PROMPTS = [[3, 4, 5], [6], [7, 8, 9, 10, 11, 12], [13, 3]]


@pytest.mark.parametrize("positions", ["rope", "sinusoidal", "learned", "alibi"])
def test_lm_greedy_equals_a_full_recompute_loop(positions: str) -> None:
    model = tiny_lm(positions=positions)
    config = GenerationConfig(max_new_tokens=10, eos_id=EOS)
    for prompt, (best,) in zip(PROMPTS, generate(model, PROMPTS, config), strict=True):
        assert best.tokens == reference_greedy(model, prompt, 10, eos=EOS)
        assert best.score == best.log_prob
        assert best.log_prob == pytest.approx(
            sequence_log_prob(model, prompt, scored_tokens(best.tokens, best.stop_token)), abs=1e-4
        )
        assert best.finished == (best.stop_token == EOS) and best.text is None


def test_seq2seq_greedy_equals_a_full_recompute_loop() -> None:
    model = tiny_seq2seq()
    free = generate(model, PROMPTS, GenerationConfig(max_new_tokens=10, bos_id=BOS))
    eos = next(token for token in free[0][0].tokens if any(token not in hyps[0].tokens for hyps in free))
    config = GenerationConfig(max_new_tokens=10, eos_id=eos, bos_id=BOS)
    results = generate(model, PROMPTS, config)
    for source, (best,) in zip(PROMPTS, results, strict=True):
        assert best.tokens == reference_greedy(model, source, 10, eos=eos)
        assert best.log_prob == pytest.approx(
            sequence_log_prob(model, source, scored_tokens(best.tokens, best.stop_token)), abs=1e-4
        )
    assert any(best.finished for (best,) in results) and not all(best.finished for (best,) in results)


def test_stop_token_is_excluded_but_scored_and_max_new_tokens_is_respected() -> None:
    model = tiny_lm()
    free = generate(model, [[3, 4]], GenerationConfig(max_new_tokens=8))[0][0]
    assert len(free.tokens) == 8 and not free.finished and free.stop_token is None
    stop = free.tokens[3]
    cut = free.tokens.index(stop)
    ended = generate(model, [[3, 4]], GenerationConfig(max_new_tokens=8, stop_token_ids=(stop,)))[0][0]
    assert ended.tokens == free.tokens[:cut] and ended.finished and ended.stop_token == stop
    assert ended.length == cut + 1
    assert ended.log_prob == pytest.approx(sequence_log_prob(model, [3, 4], free.tokens[: cut + 1]), abs=1e-4)


def _record_batch_sizes(model: torch.nn.Module) -> list[int]:
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda _module, args, kwargs: sizes.append(args[0].shape[0]), with_kwargs=True)
    return sizes


def test_finished_rows_leave_the_batch() -> None:
    model = tiny_lm()
    free = generate(model, PROMPTS, GenerationConfig(max_new_tokens=6))
    eos = free[1][0].tokens[1]  # the second prompt stops after two steps (others may too)
    stops_at = [hyps[0].tokens.index(eos) + 1 if eos in hyps[0].tokens else None for hyps in free]
    sizes = _record_batch_sizes(model.decoder)
    generate(model, PROMPTS, GenerationConfig(max_new_tokens=6, eos_id=eos))
    # one forward per step (prefill + 5); a row that stopped at step s is absent from later forwards
    expected = [sum(1 for stop in stops_at if stop is None or stop > step) for step in range(6)]
    assert sizes == expected and min(sizes) < len(PROMPTS)


def test_seq2seq_runs_the_encoder_once_and_fills_the_cross_cache_once() -> None:
    model = tiny_seq2seq()
    encoder_calls = _record_batch_sizes(model.encoder)
    projections: list[int] = []
    model.decoder.layers[0].cross_attn.k_proj.register_forward_hook(
        lambda _module, args, _out: projections.append(args[0].shape[0]))
    generate(model, PROMPTS, GenerationConfig(max_new_tokens=5, bos_id=BOS, num_beams=3))
    assert encoder_calls == [len(PROMPTS)] and projections == [len(PROMPTS)]
    projections.clear()
    generate(model, PROMPTS, GenerationConfig(max_new_tokens=5, bos_id=BOS, use_cache=False))
    assert len(projections) == 5  # without the cache every step projects the memory again


def test_lm_prefills_the_prompt_once_then_feeds_one_token_a_step() -> None:
    model = tiny_lm()
    lengths: list[int] = []
    model.register_forward_pre_hook(lambda _module, args, _kwargs: lengths.append(args[0].shape[1]), with_kwargs=True)
    generate(model, [[3, 4, 5], [6]], GenerationConfig(max_new_tokens=4))
    assert lengths == [3, 1, 1, 1]
    lengths.clear()
    generate(model, [[3, 4, 5], [6]], GenerationConfig(max_new_tokens=4, use_cache=False))
    assert lengths == [3, 4, 5, 6]


prompts = st.lists(st.lists(st.integers(3, VOCAB - 1), min_size=1, max_size=6), min_size=1, max_size=4)


@settings(deadline=None, max_examples=8)
@given(inputs=prompts, seq2seq=st.booleans(), beams=st.sampled_from([1, 3]))
def test_cached_and_uncached_decoding_agree(inputs: list[list[int]], seq2seq: bool, beams: int) -> None:
    model: DecoderLM | EncoderDecoder = tiny_seq2seq(seed=1) if seq2seq else tiny_lm(seed=1)
    config = GenerationConfig(max_new_tokens=7, eos_id=EOS, bos_id=BOS, num_beams=beams,
                              num_return_sequences=beams)
    cached = generate(model, inputs, config)
    uncached = generate(model, inputs, config.replace(use_cache=False))
    for fast, slow in zip(cached, uncached, strict=True):
        assert [h.tokens for h in fast] == [h.tokens for h in slow]
        for a, b in zip(fast, slow, strict=True):
            assert math.isclose(a.log_prob, b.log_prob, abs_tol=1e-4) and a.finished == b.finished
