"""``BeamSearch``: batched beam search with a length penalty, early stopping and n-best lists.

Each input is run once; its first distribution seeds ``K = num_beams`` distinct beams, after which the
rows (and caches) are repeated per beam and reordered at every step. Beams are ranked by the sum of
their log-probabilities; a beam that picks a stop token (or completes a stop string) among the ``K``
best candidates becomes a finished hypothesis scored ``sum / length ** length_penalty``. A sentence is
done when it holds ``K`` finished hypotheses (``early_stopping``), or when no live beam can still beat
the worst of them; done sentences leave the batch.

Shape legend: ``n`` active sentences, ``b`` beams per sentence (1 at the first step, then ``K``),
``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch

from multihead.generation.config import GenerationConfig
from multihead.generation.constraints import apply_constraints
from multihead.generation.hypothesis import Hypothesis, Stopping, penalised_score
from multihead.generation.sampling import penalise_repetitions
from multihead.generation.state import DecodingState

__all__ = ["BeamSearch"]


@dataclass
class _Beam:
    """A live beam: its tokens, the sum it is ranked by, the model's log-probability, and ``row``, the
    state row of its parent at the step that made it (the row ``DecodingState.select`` copies)."""

    tokens: list[int]
    ranked: float
    log_prob: float
    row: int


class BeamSearch:
    """Beam search over every input of ``state`` at once.

    ``run`` yields once after every step; ``current_best`` and ``results`` read the outcome.

    Args:
        state: the rows to decode, one per input, not yet prefilled.
        config: the generation settings (``num_beams``, ``length_penalty``, ``early_stopping``, ...).
        stopping: stop tokens, stop strings and text.
    """

    def __init__(self, state: DecodingState, config: GenerationConfig, stopping: Stopping) -> None:
        self.state = state
        self.config = config
        self.stopping = stopping
        self.inputs = state.rows
        self.live: list[list[_Beam]] = [[_Beam([], 0.0, 0.0, row)] for row in range(self.inputs)]
        self.finished: list[list[Hypothesis]] = [[] for _ in range(self.inputs)]

    def run(self) -> Iterator[None]:
        """Search until every sentence is done or ``max_new_tokens`` are reached; yields after each step."""
        state, config = self.state, self.config
        beams, last_step = config.num_beams, config.max_new_tokens - 1
        active = list(range(self.inputs))  # sentences in the order of their row blocks
        logits = state.prefill()  # (n * b, V)
        for step in range(config.max_new_tokens):
            vocab = logits.shape[-1]
            per_sentence = len(self.live[active[0]])
            log_probs = logits.float().log_softmax(dim=-1)  # (n * b, V)
            ranked = log_probs
            if config.repetition_penalty != 1.0:
                penalised = penalise_repetitions(logits.float(), *state.history(), config.repetition_penalty)
                ranked = penalised.log_softmax(dim=-1)
            if config.no_repeat_ngram_size or step < config.min_new_tokens:
                ranked = apply_constraints(ranked, *state.history(), config, generated=step)
            sums = torch.tensor([[beam.ranked for beam in self.live[i]] for i in active], device=logits.device)
            candidates = (sums[:, :, None] + ranked.view(len(active), per_sentence, vocab))  # (n, b, V)
            candidates = candidates.view(len(active), per_sentence * vocab)  # (n, b * V)
            # enough candidates that K of them are not stop tokens (each parent can pick each stop token)
            width = min(per_sentence * vocab, beams * (1 + len(self.stopping.stop_ids)))
            top_sums, top_index = candidates.topk(width, dim=1)  # (n, width), best first
            top_ranked = ranked.view(len(active), -1).gather(1, top_index).tolist()
            top_model = log_probs.view(len(active), -1).gather(1, top_index).tolist()
            top_sums_list, top_index_list = top_sums.tolist(), top_index.tolist()

            next_active: list[int] = []
            for position, sentence in enumerate(active):
                candidates_of_sentence = zip(top_sums_list[position], top_index_list[position], top_ranked[position],
                                             top_model[position], strict=True)
                chosen = self._extend(sentence, candidates_of_sentence, vocab, first_row=position * per_sentence)
                self.live[sentence] = chosen
                if not chosen or self._is_done(sentence, step + 1, last=step == last_step):
                    self.live[sentence] = []  # stopped early: no live beam can enter the n-best list
                elif step < last_step:  # at the last step the live beams join the n-best list unfinished
                    next_active.append(sentence)
            yield
            if not next_active:
                break
            # beams keep their sentence's row block; with no sentence dropped and K beams each (not the first
            # step, where each sentence has one row), every row's parent holds the same source
            same_sources = next_active == active and per_sentence == beams
            active = next_active
            rows = [beam.row for i in active for beam in self.live[i]]
            tokens = [beam.tokens[-1] for i in active for beam in self.live[i]]
            state.select(torch.tensor(rows, device=logits.device), same_sources=same_sources)
            logits = state.advance(torch.tensor(tokens, device=logits.device))

    def _extend(
        self, sentence: int, candidates: Iterable[tuple[float, int, float, float]], vocab: int, *, first_row: int
    ) -> list[_Beam]:
        """The next ``num_beams`` live beams of ``sentence`` from its candidates, best first.

        Each candidate is ``(sum, parent * V + token, ranked log-prob, model log-prob)``. Stop candidates
        among the ``num_beams`` best become finished hypotheses; ``first_row`` is the state row of the
        sentence's first parent.
        """
        beams = self.config.num_beams
        parents = self.live[sentence]
        chosen: list[_Beam] = []
        for rank, (total, flat, ranked_log_prob, model_log_prob) in enumerate(candidates):
            if total == float("-inf"):
                break
            parent_index, token = divmod(flat, vocab)
            parent = parents[parent_index]
            ranked_sum, model_sum = parent.ranked + ranked_log_prob, parent.log_prob + model_log_prob
            if self.stopping.is_stop_token(token):
                if rank < beams:
                    self._finish(sentence, parent.tokens, ranked_sum, model_sum, stop_token=token)
                continue
            tokens = [*parent.tokens, token]
            if self.stopping.hits_string(tokens):
                if rank < beams:
                    self._finish(sentence, tokens, ranked_sum, model_sum)
                continue
            chosen.append(_Beam(tokens, ranked_sum, model_sum, first_row + parent_index))
            if len(chosen) == beams:
                break
        if chosen and len(chosen) < beams:  # too few candidates: pad with beams that never win
            filler = chosen[0]
            chosen += [_Beam(filler.tokens, float("-inf"), float("-inf"), filler.row)] * (beams - len(chosen))
        return chosen

    def current_best(self, index: int) -> list[int]:
        """Tokens of the best hypothesis of input ``index`` so far, finished or live."""
        return self._pool(index)[0].tokens

    def results(self) -> list[list[Hypothesis]]:
        """Per input, the ``num_return_sequences`` best hypotheses by score (best first)."""
        return [self._pool(index)[: self.config.num_return_sequences] for index in range(self.inputs)]

    def _pool(self, index: int) -> list[Hypothesis]:
        """Finished hypotheses of input ``index`` and, if it has not stopped early, its live beams."""
        pool = list(self.finished[index])
        for beam in self.live[index]:
            if beam.ranked != float("-inf"):
                score = penalised_score(beam.ranked, len(beam.tokens), self.config.length_penalty)
                pool.append(self.stopping.hypothesis(beam.tokens, log_prob=beam.log_prob, score=score, finished=False))
        return sorted(pool, key=lambda hypothesis: hypothesis.score, reverse=True)

    def _finish(
        self, sentence: int, tokens: list[int], ranked_sum: float, model_sum: float, *, stop_token: int | None = None
    ) -> None:
        """Keep a finished hypothesis if it is among the ``num_beams`` best of its sentence."""
        length = len(tokens) + (stop_token is not None)
        score = penalised_score(ranked_sum, length, self.config.length_penalty)
        kept = self.finished[sentence]
        if len(kept) >= self.config.num_beams and score <= kept[-1].score:
            return
        kept.append(self.stopping.hypothesis(tokens, log_prob=model_sum, score=score, finished=True,
                                             stop_token=stop_token))
        kept.sort(key=lambda hypothesis: hypothesis.score, reverse=True)
        del kept[self.config.num_beams :]

    def _is_done(self, sentence: int, length: int, *, last: bool = False) -> bool:
        """Whether ``sentence`` stops, its live beams left out of the n-best list, after a step that left
        them ``length`` tokens long (``last``: the step that reached ``max_new_tokens``)."""
        kept = self.finished[sentence]
        if len(kept) < self.config.num_beams:
            return False
        if last:  # the live beams end here too, unfinished, and compete by their own scores (as in Hugging Face)
            return False
        if self.config.early_stopping:
            return True
        # Sums only fall as beams grow; the best score a live beam can still reach is its sum over the
        # longest length (length_penalty > 0) or the shortest one it can end with (otherwise).
        best_sum = max(beam.ranked for beam in self.live[sentence])
        penalty = self.config.length_penalty
        bound_length = self.config.max_new_tokens if penalty > 0 else length + 1
        return penalised_score(best_sum, bound_length, penalty) <= kept[-1].score
