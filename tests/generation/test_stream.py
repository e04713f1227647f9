"""``stream`` yields the text after every step; its last text is ``generate``'s best text."""

from __future__ import annotations

import itertools

import pytest
import torch
from tiny_models import BOS, tiny_lm, tiny_seq2seq

from multihead.generation import GenerationConfig, generate, stream

LETTERS = "abcdefghijklmnop"


def decode(ids: list[int]) -> str:
    return " ".join(LETTERS[token] for token in ids)


CONFIGS = {
    "greedy": GenerationConfig(max_new_tokens=9, bos_id=BOS, eos_id=5),
    "beam": GenerationConfig(max_new_tokens=9, bos_id=BOS, eos_id=5, num_beams=4, num_return_sequences=2,
                             length_penalty=0.5),
    "beam exact stop": GenerationConfig(max_new_tokens=9, bos_id=BOS, eos_id=6, num_beams=3, early_stopping=False),
    "sampling": GenerationConfig(max_new_tokens=9, bos_id=BOS, do_sample=True, seed=3, num_return_sequences=3,
                                 top_k=6),
    "stop string": GenerationConfig(max_new_tokens=9, bos_id=BOS, stop_strings=("c d", "g h")),
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("seq2seq", [False, True])
def test_last_streamed_text_is_the_generated_text(name: str, seq2seq: bool) -> None:
    model = tiny_seq2seq() if seq2seq else tiny_lm()
    config = CONFIGS[name]
    for source in ([3, 4, 5], [9], [12, 13, 14, 15]):
        texts = list(stream(model, source, config, decode=decode))
        best = generate(model, [source], config, decode=decode)[0][0]
        assert texts and all(isinstance(text, str) for text in texts)
        assert texts[-1] == best.text
        assert len(texts) <= config.max_new_tokens + 1


def test_greedy_stream_grows_one_token_a_step_and_leaks_no_mode() -> None:
    model = tiny_lm().train()
    config = GenerationConfig(max_new_tokens=7)
    texts = []
    for text in stream(model, [3, 4], config, decode=decode):
        assert not torch.is_inference_mode_enabled() and model.training  # the caller's state between steps
        texts.append(text)
    assert len(texts) == 7
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    assert [len(text.split()) for text in texts] == list(range(1, 8))


def test_beam_stream_can_change_its_mind() -> None:
    """The current best beam is not always an extension of the previous one, and the end is still right."""
    changed = False
    for seed in range(4):
        model = tiny_lm(seed=seed)
        texts = list(stream(model, [3, 4, 5], CONFIGS["beam"].replace(eos_id=None), decode=decode))
        changed |= any(not later.startswith(earlier) for earlier, later in itertools.pairwise(texts))
    assert changed
