"""Capture during generation gives, step by step, the rows of one forward pass over the final output
(greedy, and beam search following the chosen beam), with and without the KV cache."""

from __future__ import annotations

import pytest
import torch
from tiny_models import BOS, EOS, tiny_lm, tiny_seq2seq

from multihead.generation import GenerationConfig, generate
from multihead.inspect import Site, capture_attention, generate_with_attention, teacher_forced_attention

SOURCE = [3, 4, 5, 6, 7, 8]


def _config(**options: object) -> GenerationConfig:
    values: dict[str, object] = {"max_new_tokens": 8, "bos_id": BOS, "eos_id": EOS, "pad_id": 0}
    values.update(options)
    return GenerationConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("num_beams", [1, 3])
def test_seq2seq_generation_rows_equal_a_teacher_forced_forward(num_beams: int, use_cache: bool) -> None:
    model = tiny_seq2seq(seed=1)
    config = _config(num_beams=num_beams, use_cache=use_cache)
    decoded = generate_with_attention(model, SOURCE, config)
    assert decoded.hypothesis.tokens == generate(model, [SOURCE], config)[0][0].tokens
    assert len(decoded.sequence) >= 3 and decoded.sequence[0] == BOS
    forward = teacher_forced_attention(model, SOURCE, decoded.sequence)
    assert set(forward) == set(decoded.weights) and len(forward) == 2 * 3  # encoder self, decoder self + cross
    for site, expected in forward.items():
        got = decoded.weights[site]
        assert got.shape == expected.shape, site
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5, msg=site.name)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_language_model_generation_rows_equal_a_forward(num_beams: int) -> None:
    model = tiny_lm(seed=2)
    prompt = [3, 9, 4]
    config = _config(num_beams=num_beams, bos_id=None, max_new_tokens=6)
    decoded = generate_with_attention(model, prompt, config, layers=[1], heads=[0, 2])
    assert decoded.sequence[:3] == prompt and len(decoded.sequence) > 3
    forward = teacher_forced_attention(model, [], decoded.sequence, layers=[1], heads=[0, 2])
    site = Site("decoder", 1, "self")
    assert list(forward) == [site] and forward[site].shape[0] == 2
    torch.testing.assert_close(decoded.weights[site], forward[site], rtol=1e-4, atol=1e-5)


def test_the_chosen_beam_moves_between_rows() -> None:
    """The case above is not trivial: reading a fixed row (row 0) at every step would give other weights."""
    model = tiny_seq2seq(seed=1)
    config = _config(num_beams=3)
    seen: list[torch.Tensor] = []
    with capture_attention(model, kinds=["cross"], layers=[0]) as captured:
        best = generate(model, [SOURCE], config, on_forward=lambda ids: seen.append(ids.clone()))[0][0]
    sequence = [BOS, *best.tokens]
    rows = []
    for ids in seen:
        if ids.shape[1] <= len(sequence):
            rows.append(int((ids == torch.tensor(sequence[: ids.shape[1]])).all(dim=1).nonzero()[0, 0]))
    assert any(row != 0 for row in rows), rows
    calls = captured.calls[Site("decoder", 0, "cross")]
    naive = torch.cat([call[0] for call in calls[: len(rows)]], dim=1)  # (H, T, S) from row 0 only
    forward = teacher_forced_attention(model, SOURCE, sequence[: len(rows)], kinds=["cross"], layers=[0])
    assert not torch.allclose(naive, forward[Site("decoder", 0, "cross")], atol=1e-4)


def test_on_forward_sees_every_model_call() -> None:
    model = tiny_seq2seq(seed=3)
    seen: list[tuple[int, int]] = []
    config = _config(max_new_tokens=5)
    best = generate(model, [SOURCE], config, on_forward=lambda ids: seen.append(tuple(ids.shape)))[0][0]
    fed = len(best.tokens) + (1 if best.finished else 0)  # BOS plus every token fed back
    assert seen == [(1, length) for length in range(1, fed + 1)]
