"""Batch invariance: an input decoded alone or inside a padded batch of others gets the same outputs."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import BOS, VOCAB, tiny_lm, tiny_seq2seq

from multihead import DecoderLM, EncoderDecoder
from multihead.generation import GenerationConfig, generate

inputs_strategy = st.lists(st.lists(st.integers(3, VOCAB - 1), min_size=1, max_size=7), min_size=2, max_size=4)


def outputs(model: DecoderLM | EncoderDecoder, inputs: list[list[int]], config: GenerationConfig, **kwargs: int
            ) -> list[list[tuple[list[int], int | None, float]]]:
    return [[(h.tokens, h.stop_token, h.log_prob) for h in hyps] for hyps in generate(model, inputs, config, **kwargs)]


def assert_same(batched: list, alone: list) -> None:
    for one_batched, one_alone in zip(batched, alone, strict=True):
        assert [(t, s) for t, s, _ in one_batched] == [(t, s) for t, s, _ in one_alone]
        assert [p for _, _, p in one_batched] == pytest.approx([p for _, _, p in one_alone], abs=1e-4)


@settings(deadline=None, max_examples=6)
@given(inputs=inputs_strategy, seq2seq=st.booleans(), beams=st.sampled_from([1, 3]),
       positions=st.sampled_from(["rope", "learned", "sinusoidal", "alibi"]))
def test_alone_or_in_a_padded_batch_gives_the_same_outputs(
    inputs: list[list[int]], seq2seq: bool, beams: int, positions: str
) -> None:
    model = tiny_seq2seq(positions=positions) if seq2seq else tiny_lm(positions=positions)
    config = GenerationConfig(max_new_tokens=6, num_beams=beams, num_return_sequences=beams, eos_id=5, bos_id=BOS)
    batched = outputs(model, inputs, config)
    alone = [outputs(model, [one], config)[0] for one in inputs]
    assert_same(batched, alone)


@pytest.mark.parametrize("positions", ["learned", "rope"])
@pytest.mark.parametrize(("seq2seq", "beams"), [(False, 1), (False, 3), (True, 1), (True, 3)])
def test_padding_really_happens_and_changes_nothing(seq2seq: bool, beams: int, positions: str) -> None:
    """A fixed case with very different lengths; the padded batch is also split by ``batch_size``."""
    model = tiny_seq2seq(positions=positions) if seq2seq else tiny_lm(positions=positions)
    inputs = [[3], [4, 5, 6, 7, 8, 9, 10, 11, 12], [13, 14], [15, 3, 4, 5, 6]]
    config = GenerationConfig(max_new_tokens=8, num_beams=beams, num_return_sequences=beams, eos_id=6, bos_id=BOS)
    alone = [outputs(model, [one], config)[0] for one in inputs]
    assert_same(outputs(model, inputs, config), alone)
    assert_same(outputs(model, inputs, config, batch_size=3), alone)
    assert len({tuple(one[0][0]) for one in alone}) > 1  # different inputs really give different outputs


def test_padding_token_choice_does_not_matter() -> None:
    model = tiny_lm()
    inputs = [[3], [4, 5, 6, 7, 8, 9]]
    config = GenerationConfig(max_new_tokens=6, num_beams=2, num_return_sequences=2)
    assert_same(outputs(model, inputs, config), outputs(model, inputs, config.replace(pad_id=9)))
