"""``TokenSearch``: greedy decoding or sampling, one token a step per row; finished rows leave the batch.

Shape legend: ``N`` active rows, ``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from multihead.generation.config import GenerationConfig
from multihead.generation.constraints import apply_constraints
from multihead.generation.hypothesis import Hypothesis, Stopping
from multihead.generation.sampling import choose_tokens, penalise_repetitions
from multihead.generation.state import DecodingState

__all__ = ["TokenSearch"]


class TokenSearch:
    """Greedy decoding (``do_sample=False``) or sampling of ``num_return_sequences`` outputs per input.

    ``run`` yields once after every step; ``current_best`` and ``results`` read the outcome.

    Args:
        state: the rows to decode, one per input, not yet prefilled.
        config: the generation settings.
        stopping: stop tokens, stop strings and text.
        generator: the random source of sampling (``None`` for greedy decoding).
    """

    def __init__(
        self,
        state: DecodingState,
        config: GenerationConfig,
        stopping: Stopping,
        generator: torch.Generator | None = None,
    ) -> None:
        self.state = state
        self.config = config
        self.stopping = stopping
        self.generator = generator
        self.inputs = state.rows
        self.per_input = config.num_return_sequences
        slots = self.inputs * self.per_input  # output slot = input * per_input + sample
        self.tokens: list[list[int]] = [[] for _ in range(slots)]
        self.log_probs = [0.0] * slots
        self.ended: list[Hypothesis | None] = [None] * slots

    def run(self) -> Iterator[None]:
        """Decode until every row has stopped or produced ``max_new_tokens`` tokens; yields after each step."""
        state, config = self.state, self.config
        logits = state.prefill()  # (N, V)
        active = list(range(self.inputs * self.per_input))  # the output slot of every row
        if self.per_input > 1:  # the prompt ran once; now each input gets its own rows
            repeat = torch.arange(self.inputs, device=logits.device).repeat_interleave(self.per_input)
            state.select(repeat)
            logits = logits.index_select(0, repeat)  # (N * per_input, V)
        for step in range(config.max_new_tokens):
            scores = logits.float()  # (N, V)
            log_probs = scores.log_softmax(dim=-1)
            if config.repetition_penalty != 1.0:
                scores = penalise_repetitions(scores, *state.history(), config.repetition_penalty)
            if config.no_repeat_ngram_size or step < config.min_new_tokens:
                scores = apply_constraints(scores, *state.history(), config, generated=step)
            chosen = choose_tokens(scores, config, self.generator)  # (N,)
            chosen_log_probs = log_probs.gather(1, chosen[:, None])[:, 0].tolist()
            keep: list[int] = []
            for row, (slot, token) in enumerate(zip(active, chosen.tolist(), strict=True)):
                self.log_probs[slot] += chosen_log_probs[row]
                if self.stopping.is_stop_token(token):
                    self._end(slot, stop_token=token)
                    continue
                self.tokens[slot].append(token)
                if self.stopping.hits_string(self.tokens[slot]):
                    self._end(slot)
                    continue
                keep.append(row)
            yield
            if not keep or step == config.max_new_tokens - 1:
                break
            if len(keep) < len(active):  # finished rows stop costing compute
                index = torch.tensor(keep, device=chosen.device)
                state.select(index)
                chosen = chosen.index_select(0, index)
                active = [active[row] for row in keep]
            logits = state.advance(chosen)

    def current_best(self, index: int) -> list[int]:
        """Tokens so far of the best output of input ``index`` (by log-probability)."""
        slots = range(index * self.per_input, (index + 1) * self.per_input)
        return self.tokens[max(slots, key=lambda slot: self.log_probs[slot])]

    def results(self) -> list[list[Hypothesis]]:
        """Per input, its outputs sorted by score (best first); rows still running count as unfinished."""
        out = []
        for index in range(self.inputs):
            hypotheses = []
            for slot in range(index * self.per_input, (index + 1) * self.per_input):
                ended = self.ended[slot]
                if ended is None:
                    ended = self.stopping.hypothesis(
                        self.tokens[slot], log_prob=self.log_probs[slot], score=self.log_probs[slot], finished=False
                    )
                hypotheses.append(ended)
            out.append(sorted(hypotheses, key=lambda hypothesis: hypothesis.score, reverse=True))
        return out

    def _end(self, slot: int, *, stop_token: int | None = None) -> None:
        self.ended[slot] = self.stopping.hypothesis(
            self.tokens[slot], log_prob=self.log_probs[slot], score=self.log_probs[slot], finished=True,
            stop_token=stop_token,
        )
