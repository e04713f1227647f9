"""``no_repeat_ngram_size`` and ``min_new_tokens``: the forbidden tokens against a brute-force count, decoded outputs
(greedy, beam, sampling; DecoderLM and EncoderDecoder) without a repeated n-gram, equal to a plain reference loop,
and no stop token before the minimum length."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import BOS, next_token_logits, tiny_lm, tiny_seq2seq

from multihead.errors import ConfigError
from multihead.generation import GenerationConfig, Scheduler, generate
from multihead.generation.constraints import repeated_ngram_tokens

PROMPTS = [[3, 4, 5], [6], [7, 8, 9, 10], [3, 3, 3, 3]]


def brute_force_banned(tokens: list[int], n: int) -> set[int]:
    """Every token that ends an n-gram of ``tokens`` whose first ``n - 1`` tokens are ``tokens``' last ``n - 1``."""
    if len(tokens) < n:
        return set()
    suffix = tokens[len(tokens) - n + 1:]
    return {tokens[i + n - 1] for i in range(len(tokens) - n + 1) if tokens[i:i + n - 1] == suffix}


def has_repeated_ngram(tokens: list[int], n: int, *, new_from: int = 0) -> bool:
    """Whether an n-gram ending at or after position ``new_from`` (the first generated token) occurred before."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return any(grams[i] in grams[:i] for i in range(len(grams)) if i + n - 1 >= new_from)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(st.integers(0, 3), min_size=0, max_size=12), min_size=1, max_size=4),
       n=st.integers(1, 4))
def test_forbidden_tokens_equal_a_brute_force_count(rows: list[list[int]], n: int) -> None:
    longest = max(1, max(len(row) for row in rows))
    history = torch.tensor([[0] * (longest - len(row)) + row for row in rows])  # left-padded with 0
    mask = torch.tensor([[False] * (longest - len(row)) + [True] * len(row) for row in rows])
    banned = repeated_ngram_tokens(history, mask, n, 5)
    for row, tokens in enumerate(rows):
        assert set(torch.nonzero(banned[row])[:, 0].tolist()) == brute_force_banned(tokens, n)


def reference_blocked_greedy(model: torch.nn.Module, source: list[int], steps: int, n: int, *, seq2seq: bool
                             ) -> list[int]:
    """Greedy decoding written plainly: a full forward per step, brute-force n-gram bans, argmax."""
    tokens: list[int] = []
    for _ in range(steps):
        logits = next_token_logits(model, source, tokens).clone()  # type: ignore[arg-type]
        seen = [BOS, *tokens] if seq2seq else [*source, *tokens]
        for token in brute_force_banned(seen, n):
            logits[token] = float("-inf")
        tokens.append(int(logits.argmax()))
    return tokens


@pytest.mark.parametrize("seq2seq", [False, True])
def test_blocked_greedy_equals_a_plain_reference_loop_and_repeats_no_ngram(seq2seq: bool) -> None:
    model = tiny_seq2seq() if seq2seq else tiny_lm()
    config = GenerationConfig(max_new_tokens=30, bos_id=BOS)
    free = generate(model, PROMPTS, config)
    assert any(has_repeated_ngram(h[0].tokens, 2) for h in free)  # the model loops when nothing stops it
    blocked = generate(model, PROMPTS, config.replace(no_repeat_ngram_size=2))
    for source, (best,) in zip(PROMPTS, blocked, strict=True):
        assert best.tokens == reference_blocked_greedy(model, source, 30, 2, seq2seq=seq2seq)
        assert not has_repeated_ngram(best.tokens if seq2seq else [*source, *best.tokens], 2,
                                      new_from=0 if seq2seq else len(source))


@pytest.mark.parametrize("options", [{"num_beams": 4, "num_return_sequences": 4},
                                     {"do_sample": True, "seed": 3, "num_return_sequences": 3}])
@pytest.mark.parametrize("seq2seq", [False, True])
@pytest.mark.parametrize("n", [1, 3])
def test_no_output_of_beam_search_or_sampling_repeats_an_ngram(options: dict, seq2seq: bool, n: int) -> None:
    model = tiny_seq2seq() if seq2seq else tiny_lm()
    steps = 12 if n == 1 else 40  # n = 1 bans every token once seen: the 16-token vocabulary runs out
    config = GenerationConfig(max_new_tokens=steps, bos_id=BOS, no_repeat_ngram_size=n, **options)
    for source, hypotheses in zip(PROMPTS, generate(model, PROMPTS, config), strict=True):
        for hypothesis in hypotheses:
            seen = hypothesis.tokens if seq2seq else [*source, *hypothesis.tokens]
            assert not has_repeated_ngram(seen, n, new_from=0 if seq2seq else len(source)), hypothesis.tokens
            assert len(hypothesis.tokens) == steps and hypothesis.log_prob > float("-inf")


@pytest.mark.parametrize("options", [{}, {"num_beams": 3}, {"do_sample": True, "seed": 0}])
@pytest.mark.parametrize("seq2seq", [False, True])
def test_no_stop_token_before_the_minimum_length(options: dict, seq2seq: bool) -> None:
    model = tiny_seq2seq() if seq2seq else tiny_lm()
    firsts = [int(next_token_logits(model, source, []).argmax()) for source in PROMPTS]  # type: ignore[arg-type]
    eos = max(set(firsts), key=firsts.count)  # the token most inputs would stop on at once
    config = GenerationConfig(max_new_tokens=12, bos_id=BOS, eos_id=eos, stop_token_ids=(5,), **options)
    assert any(len(h[0].tokens) == 0 for h in generate(model, PROMPTS, config))  # they do stop at once
    for hypotheses in generate(model, PROMPTS, config.replace(min_new_tokens=6)):
        for hypothesis in hypotheses:
            assert len(hypothesis.tokens) >= 6
            assert not {eos, 5} & set(hypothesis.tokens)  # a stop token ends a sequence; it is never inside it


def test_bad_values_are_config_errors_and_the_scheduler_refuses_them() -> None:
    for name in ("no_repeat_ngram_size", "min_new_tokens"):
        for bad in (-1, 1.5, True):
            with pytest.raises(ConfigError, match=name):
                GenerationConfig(**{name: bad})
    with Scheduler(tiny_lm(), slots=1) as scheduler, pytest.raises(ConfigError, match="no_repeat_ngram_size"):
        scheduler.submit([3, 4], GenerationConfig(max_new_tokens=4, no_repeat_ngram_size=3))
