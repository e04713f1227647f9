"""Beam search: exact on a search space small enough to enumerate, scores, n-best lists, early stopping."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tiny_models import BOS, VOCAB, scored_tokens, sequence_log_prob, tiny_lm, tiny_seq2seq

from multihead import DecoderLM, EncoderDecoder
from multihead.generation import (
    BeamSearch,
    DecodingState,
    GenerationConfig,
    Hypothesis,
    Stopping,
    TokenSearch,
    generate,
)
from multihead.generation.hypothesis import penalised_score

PROMPTS = [[3, 4, 5], [6], [7, 8, 9, 10, 11, 12], [13, 3], [9, 9]]


def run_search(kind: type, model: DecoderLM | EncoderDecoder, inputs: list[list[int]], config: GenerationConfig
               ) -> list[list[Hypothesis]]:
    """Run ``TokenSearch`` or ``BeamSearch`` directly, whatever ``config.num_beams`` says."""
    with torch.inference_mode():
        state = DecodingState(model, inputs, max_new_tokens=config.max_new_tokens, use_cache=True, bos_id=BOS,
                              pad_id=0)
        search = kind(state, config, Stopping(config.stop_ids))
        for _ in search.run():
            pass
        return search.results()


@pytest.mark.parametrize("seq2seq", [False, True])
def test_beam_of_one_is_greedy(seq2seq: bool) -> None:
    model = tiny_seq2seq() if seq2seq else tiny_lm()
    eos = 3 if seq2seq else 6  # tokens these models pick now and then
    config = GenerationConfig(max_new_tokens=9, eos_id=eos, length_penalty=0.0)
    greedy = run_search(TokenSearch, model, PROMPTS, config)
    beam = run_search(BeamSearch, model, PROMPTS, config)
    assert [h[0].tokens for h in beam] == [h[0].tokens for h in greedy]
    assert any(h[0].finished for h in greedy) and not all(h[0].finished for h in greedy)
    for (b,), (g,) in zip(beam, greedy, strict=True):
        assert b.stop_token == g.stop_token and math.isclose(b.log_prob, g.log_prob, abs_tol=1e-5)


def brute_force(model: DecoderLM, prompt: list[int], eos: int | None, length_penalty: float) -> list[tuple]:
    """Every output of at most two tokens, as (score, tokens, stop token), best first."""
    with torch.no_grad():
        pairs = torch.tensor(list(itertools.product(range(VOCAB), repeat=2)))  # (V * V, 2)
        ids = torch.cat([torch.tensor(prompt).expand(len(pairs), -1), pairs], dim=1)  # (V * V, P + 2)
        log_probs = model(ids[:, :-1])[:, -2:].double().log_softmax(-1)  # (V * V, 2, V)
        first = log_probs[:, 0].gather(1, pairs[:, :1])[:, 0]
        second = log_probs[:, 1].gather(1, pairs[:, 1:])[:, 0]
    outputs = {}
    for index, (a, b) in enumerate(pairs.tolist()):
        if a == eos:
            outputs[((), a)] = penalised_score(float(first[index]), 1, length_penalty)
        elif b == eos:
            outputs[((a,), b)] = penalised_score(float(first[index] + second[index]), 2, length_penalty)
        else:
            outputs[((a, b), None)] = penalised_score(float(first[index] + second[index]), 2, length_penalty)
    return sorted(((score, tokens, stop) for (tokens, stop), score in outputs.items()), reverse=True)


@pytest.mark.parametrize(("eos", "length_penalty"), [(None, 1.0), (6, 1.0), (6, 0.0), (6, 2.0), (1, -0.5)])
def test_beam_as_wide_as_the_vocabulary_finds_the_exact_n_best(eos: int | None, length_penalty: float) -> None:
    """With ``num_beams == V`` and two steps every prefix survives the first step, so the n-best list is
    the true top ``V`` of all outputs of at most two tokens."""
    model = tiny_lm()
    config = GenerationConfig(max_new_tokens=2, num_beams=VOCAB, num_return_sequences=VOCAB, eos_id=eos,
                              length_penalty=length_penalty)
    for prompt, hypotheses in zip(PROMPTS[:3], generate(model, PROMPTS[:3], config), strict=True):
        exact = brute_force(model, prompt, eos, length_penalty)[:VOCAB]
        assert [(tuple(h.tokens), h.stop_token) for h in hypotheses] == [(tokens, stop) for _, tokens, stop in exact]
        assert [h.score for h in hypotheses] == pytest.approx([score for score, _, _ in exact], abs=1e-4)


settings_ = settings(deadline=None, max_examples=10)
prompt_lists = st.lists(st.lists(st.integers(3, VOCAB - 1), min_size=1, max_size=5), min_size=1, max_size=3)


@settings_
@given(inputs=prompt_lists, seq2seq=st.booleans(), beams=st.integers(2, 5), length_penalty=st.sampled_from([0.0, 0.6,
       1.0, 2.0]), early_stopping=st.booleans(), eos=st.sampled_from([3, 5, 6]))
def test_n_best_is_sorted_and_scores_are_the_models(
    inputs: list[list[int]], seq2seq: bool, beams: int, length_penalty: float, early_stopping: bool, eos: int
) -> None:
    model = tiny_seq2seq() if seq2seq else tiny_lm()
    config = GenerationConfig(max_new_tokens=6, num_beams=beams, num_return_sequences=beams, eos_id=eos, bos_id=BOS,
                              length_penalty=length_penalty, early_stopping=early_stopping)
    for source, hypotheses in zip(inputs, generate(model, inputs, config), strict=True):
        assert len(hypotheses) == beams
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
        assert len({(tuple(h.tokens), h.stop_token) for h in hypotheses}) == beams  # distinct outputs
        for h in hypotheses:
            recomputed = sequence_log_prob(model, source, scored_tokens(h.tokens, h.stop_token))
            assert h.log_prob == pytest.approx(recomputed, abs=1e-4)
            assert h.score == pytest.approx(h.log_prob / h.length**length_penalty, abs=1e-5)
            assert h.finished == (h.stop_token is not None) and eos not in h.tokens
            assert h.finished or len(h.tokens) == 6


def test_beams_find_more_likely_outputs_than_greedy() -> None:
    """The tiny models are not peaked: on fixed-length outputs a 4-beam search beats greedy on most inputs."""
    model = tiny_lm()
    config = GenerationConfig(max_new_tokens=8)
    greedy = generate(model, PROMPTS, config)
    beam = generate(model, PROMPTS, config.replace(num_beams=4))
    better = [b[0].log_prob > g[0].log_prob + 1e-6 for b, g in zip(beam, greedy, strict=True)]
    assert sum(better) >= 2


def n_best(results: list[list[Hypothesis]]) -> list[list[tuple[list[int], int | None]]]:
    return [[(h.tokens, h.stop_token) for h in hyps] for hyps in results]


def search_to_the_end(model: DecoderLM, inputs: list[list[int]], config: GenerationConfig,
                      monkeypatch: pytest.MonkeyPatch) -> list[list[Hypothesis]]:
    """Beam search that never stops a sentence before ``max_new_tokens``."""
    with monkeypatch.context() as patch:
        patch.setattr(BeamSearch, "_is_done", lambda self, sentence, length, last=False: False)
        return run_search(BeamSearch, model, inputs, config)


@settings_
@given(inputs=prompt_lists, length_penalty=st.sampled_from([0.0, 1.0, 2.0, -1.0]), eos=st.sampled_from([5, 6, 12]))
@example(inputs=[[15]], length_penalty=-1.0, eos=6)  # an unfinished beam at max_new_tokens beats a finished one
def test_early_stopping_false_stops_only_when_no_beam_can_improve(
    inputs: list[list[int]], length_penalty: float, eos: int
) -> None:
    """Stopping once no live beam can beat the worst finished hypothesis gives the same n-best list as
    searching to ``max_new_tokens`` (where live beams join the list unfinished)."""
    model = tiny_lm(seed=2)
    config = GenerationConfig(max_new_tokens=8, num_beams=3, num_return_sequences=3, eos_id=eos,
                              length_penalty=length_penalty, early_stopping=False)
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert n_best(run_search(BeamSearch, model, inputs, config)) == n_best(
            search_to_the_end(model, inputs, config, monkeypatch))


@pytest.mark.parametrize(("seed", "eos", "length_penalty"), [(0, 6, 1.0), (0, 6, 2.0), (0, 5, 2.0), (2, 12, 1.0)])
def test_early_stopping_bound_uses_the_longest_reachable_length(
    seed: int, eos: int, length_penalty: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cases where judging live beams at their current length (instead of the longest they can reach,
    for ``length_penalty > 0``) or stopping at ``num_beams`` finished hypotheses loses better outputs."""
    model = tiny_lm(seed=seed)
    inputs = [[3, 4, 5], [6], [7, 8, 9, 10, 11, 12], [13, 3], [9, 9], [4], [5, 6, 7]]
    config = GenerationConfig(max_new_tokens=8, num_beams=3, num_return_sequences=3, eos_id=eos,
                              length_penalty=length_penalty, early_stopping=False)
    full = n_best(search_to_the_end(model, inputs, config, monkeypatch))
    assert n_best(run_search(BeamSearch, model, inputs, config)) == full

    def at_current_length(self: BeamSearch, sentence: int, length: int, last: bool = False) -> bool:
        kept = self.finished[sentence]
        best = max(beam.ranked for beam in self.live[sentence])
        return len(kept) >= 3 and penalised_score(best, length, length_penalty) <= kept[-1].score

    monkeypatch.setattr(BeamSearch, "_is_done", at_current_length)
    assert n_best(run_search(BeamSearch, model, inputs, config)) != full


def test_done_sentences_leave_the_batch_and_early_stopping_saves_steps() -> None:
    model = tiny_lm()
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda _module, args, _kwargs: sizes.append(args[0].shape[0]), with_kwargs=True)
    config = GenerationConfig(max_new_tokens=12, num_beams=3, eos_id=6)
    results = generate(model, PROMPTS, config)
    assert sizes[0] == len(PROMPTS) and sizes[1] == 3 * len(PROMPTS)  # prefill once per input, then K rows each
    assert all(size % 3 == 0 for size in sizes[1:]) and sizes == sorted(sizes[:1]) + sorted(sizes[1:], reverse=True)
    assert sizes[-1] < sizes[1] and sum(h[0].finished for h in results) >= 2


@pytest.mark.parametrize("copy", [False, True])
def test_reordering_beams_of_one_source_leaves_the_source_caches_alone(monkeypatch: pytest.MonkeyPatch,
                                                                       copy: bool) -> None:
    """Beam steps that drop no sentence skip the cross-attention (and copy) caches, and the n-best lists are
    exactly those of reordering everything."""
    model = tiny_seq2seq(copy_attention=copy, copy_previous_token=copy)
    config = GenerationConfig(max_new_tokens=10, num_beams=3, eos_id=3, num_return_sequences=3)
    skipping = run_search(BeamSearch, model, PROMPTS, config)
    calls: list[bool] = []
    original = DecodingState.select

    def reorder_everything(self: DecodingState, index: torch.Tensor, *, same_sources: bool = False) -> None:
        calls.append(same_sources)
        original(self, index)

    monkeypatch.setattr(DecodingState, "select", reorder_everything)
    everything = run_search(BeamSearch, model, PROMPTS, config)
    assert any(calls) and not calls[0]  # the first select repeats each input's row K times
    assert [[(h.tokens, h.score, h.log_prob) for h in n_best] for n_best in skipping] == \
        [[(h.tokens, h.score, h.log_prob) for h in n_best] for n_best in everything]
