"""Stop tokens and stop strings end outputs where they should; the text is cut before the stop string."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import BOS, VOCAB, tiny_lm, tiny_seq2seq

from multihead.generation import GenerationConfig, generate

LETTERS = "abcdefghijklmnop"


def decode(ids: list[int]) -> str:
    """Odd tokens are two letters wide, so a stop string can end inside a token."""
    return "".join(LETTERS[token] * (1 + token % 2) for token in ids)


def expected_stop(tokens: list[int], stop: str) -> tuple[list[int], str] | None:
    """Where greedy output ``tokens`` must end for stop string ``stop``: tokens up to the step that completes
    it, and the text before it."""
    for end in range(1, len(tokens) + 1):
        text = decode(tokens[:end])
        if stop in text:
            return tokens[:end], text[: text.find(stop)]
    return None


@pytest.mark.parametrize("seq2seq", [False, True])
def test_stop_string_ends_greedy_output_and_cuts_the_text(seq2seq: bool) -> None:
    model = tiny_seq2seq() if seq2seq else tiny_lm()
    inputs = [[3, 4, 5], [6], [7, 8, 9, 10]]
    config = GenerationConfig(max_new_tokens=10, bos_id=BOS)
    free = [hyps[0].tokens for hyps in generate(model, inputs, config)]
    stop = decode(free[0])[3:5]  # a string the first output contains; the others may or may not
    results = generate(model, inputs, config.replace(stop_strings=(stop, "zz")), decode=decode)
    for tokens, (hypothesis,) in zip(free, results, strict=True):
        expected = expected_stop(tokens, stop)
        if expected is None:
            assert hypothesis.tokens == tokens and not hypothesis.finished and hypothesis.text == decode(tokens)
        else:
            assert (hypothesis.tokens, hypothesis.text) == expected
            assert hypothesis.finished and hypothesis.stop_token is None
    assert results[0][0].finished and len(results[0][0].text or "") <= 3


def test_several_stop_tokens_end_at_the_first_one_met() -> None:
    model = tiny_lm()
    free = generate(model, [[3, 4, 5]], GenerationConfig(max_new_tokens=10))[0][0].tokens
    first, later = free[2], free[-1]
    cut = min(free.index(first), free.index(later))
    result = generate(model, [[3, 4, 5]], GenerationConfig(max_new_tokens=10, eos_id=later, stop_token_ids=(first,)),
                      decode=decode)[0][0]
    assert result.tokens == free[:cut] and result.stop_token == free[cut] and result.text == decode(free[:cut])


@settings(deadline=None, max_examples=6)
@given(stop=st.text(alphabet="abcdefgh", min_size=2, max_size=2), seq2seq=st.booleans(),
       stop_ids=st.lists(st.integers(0, VOCAB - 1), max_size=2))
def test_beam_hypotheses_end_at_stop_strings_and_tokens(stop: str, seq2seq: bool, stop_ids: list[int]) -> None:
    model = tiny_seq2seq() if seq2seq else tiny_lm()
    config = GenerationConfig(max_new_tokens=8, num_beams=3, num_return_sequences=3, bos_id=BOS,
                              stop_strings=(stop,), stop_token_ids=tuple(stop_ids))
    for hyps in generate(model, [[3, 4, 5], [6, 7]], config, decode=decode):
        for h in hyps:
            assert not set(h.tokens) & set(stop_ids) and stop not in (h.text or "")
            full = decode(h.tokens)
            if h.stop_token is not None:
                assert h.finished and h.stop_token in stop_ids and stop not in full
            elif h.finished:  # ended by the stop string, as soon as it appeared
                assert stop in full and stop not in decode(h.tokens[:-1]) and h.text == full[: full.find(stop)]
            else:
                assert len(h.tokens) == 8 and stop not in full
