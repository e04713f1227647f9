"""Answer decoding for extractive QA: the best span of each window, then the best window of each question.

A span is a start token and an end token of the context with ``start <= end < start + max_answer_tokens``; its
score is ``start_logit[start] + end_logit[end]``. Scores compare across windows because training labels a window
that does not hold the answer with the ``[CLS]`` position, which is never a candidate: such windows learn to give
every context token a low score. A question's answer is its highest-scoring span over all of its windows, mapped
back to the context's characters through the tokens' offsets.

Shape legend: ``B`` windows in a batch, ``T`` the longest window in the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from multihead.data.qa_windows import QAWindows
from multihead.data.squad import QAExample
from multihead.models.heads import best_spans

__all__ = ["SpanAnswer", "SpanCollector", "best_window_spans", "collect_batch", "predict_answers"]


@dataclass(frozen=True)
class SpanAnswer:
    """A predicted answer: its text, its characters ``[start, end)`` in the context, its score and window."""

    text: str
    start: int
    end: int
    score: float
    window: int


def best_window_spans(start_logits: Tensor, end_logits: Tensor, context_mask: Tensor, *, max_answer_tokens: int
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """The best span of each window among its context tokens.

    Args:
        start_logits, end_logits: ``(B, T)``.
        context_mask: ``(B, T)`` bool, True on context tokens (the only candidates).
        max_answer_tokens: longest span, in tokens.

    Returns:
        ``starts``, ``ends`` ``(B,)`` long (inclusive token positions) and ``scores`` ``(B,)`` float
        (``-inf`` for a window without context tokens).
    """
    starts_masked = start_logits.float().masked_fill(~context_mask, float("-inf"))  # (B, T)
    ends_masked = end_logits.float().masked_fill(~context_mask, float("-inf"))  # (B, T)
    spans = best_spans(starts_masked, ends_masked, max_length=max_answer_tokens)  # (B, 2)
    rows = torch.arange(spans.shape[0], device=spans.device)
    scores = starts_masked[rows, spans[:, 0]] + ends_masked[rows, spans[:, 1]]  # (B,)
    return spans[:, 0], spans[:, 1], scores


class SpanCollector:
    """Keeps the best-scoring span of each question over the windows added so far."""

    def __init__(self, windows: QAWindows, examples: Sequence[QAExample]) -> None:
        self.windows, self.examples = windows, examples
        self.best: list[SpanAnswer | None] = [None] * len(examples)

    def add(self, window_indices: Sequence[int], starts: Sequence[int], ends: Sequence[int],
            scores: Sequence[float]) -> None:
        """Offer each window's best span (token positions in that window) to its question."""
        for window, start, end, score in zip(window_indices, starts, ends, scores, strict=True):
            if not math.isfinite(score):
                continue
            example = self.windows.example[window]
            current = self.best[example]
            if current is not None and current.score >= score:
                continue
            offsets = self.windows.offsets[window]
            first, last = int(offsets[start, 0]), int(offsets[end, 1])
            self.best[example] = SpanAnswer(self.examples[example].context[first:last], first, last, float(score),
                                            window)

    def answers(self) -> list[SpanAnswer | None]:
        """The best span of each question (None when none of its windows had a context token)."""
        return list(self.best)

    def predictions(self) -> dict[str, str]:
        """Question id -> answer text ("" for a question without a span), the official predictions format."""
        return {example.id: "" if answer is None else answer.text
                for example, answer in zip(self.examples, self.best, strict=True)}


def predict_answers(model: nn.Module, windows: QAWindows, examples: Sequence[QAExample], *, pad_id: int,
                    max_answer_tokens: int, batch_size: int = 64) -> SpanCollector:
    """Run ``model`` (a ``SpanExtractor``) over every window and collect each question's best span."""
    collector = SpanCollector(windows, examples)
    model.eval()
    with torch.no_grad():
        for batch in windows.batches(batch_size=batch_size, pad_id=pad_id):
            collect_batch(collector, model, batch, max_answer_tokens=max_answer_tokens)
    return collector


def collect_batch(collector: SpanCollector, model: nn.Module, batch: dict[str, Tensor], *,
                  max_answer_tokens: int) -> tuple[Tensor, Tensor]:
    """Score one batch of windows, offer its spans to ``collector``; returns the ``(B, T)`` start and end logits."""
    start_logits, end_logits = model(batch["ids"], mask=batch["mask"])  # (B, T) each
    starts, ends, scores = best_window_spans(start_logits, end_logits, batch["context_mask"],
                                             max_answer_tokens=max_answer_tokens)
    collector.add(batch["window"].tolist(), starts.tolist(), ends.tolist(), scores.tolist())
    return start_logits, end_logits

