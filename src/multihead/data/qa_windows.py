"""Question + context windows for extractive QA, with each token's character span in the context.

A question and its context become ``[CLS] question [SEP] context piece [SEP]`` (the tokenizer's own pair
template). A context longer than one window is cut into overlapping pieces: each next piece repeats the last
``stride`` context tokens of the one before (the ``tokenizers`` library's ``only_second`` truncation with a
stride), so that an answer cut by one window's edge lies whole in the next. Questions longer than
``max_question_tokens`` are cut first. Every token keeps its ``(start, end)`` character offsets in the context
(``(-1, -1)`` for question and special tokens), which map a predicted token span back to the context's text.

Shape legend: ``B`` windows in a batch, ``T`` the longest window in the batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import tokenizers
import torch
from torch import Tensor

from multihead.data.batching import BucketBatchSampler, pad_batch
from multihead.data.squad import QAExample
from multihead.errors import ConfigError
from multihead.tokenizers import Tokenizer

__all__ = ["QAWindows", "answer_token_span", "make_windows"]

Batch = dict[str, Tensor]


@dataclass
class QAWindows:
    """The windows of a list of examples.

    Attributes:
        ids: token ids of each window (special tokens included).
        offsets: ``(T, 2)`` int32 tensor per window: each token's character span in its context, ``-1`` for
            tokens outside the context (question, special tokens).
        example: the index (in the examples given to :func:`make_windows`) each window comes from.
        starts, ends: the first answer's first and last token in each window; 0 (the ``[CLS]`` position) when the
            answer is not wholly inside the window, or the example has no answer.
    """

    ids: list[list[int]]
    offsets: list[Tensor]
    example: list[int]
    starts: list[int]
    ends: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def collate(self, indices: Sequence[int], *, pad_id: int) -> Batch:
        """``ids``/``mask``/``context_mask`` ``(B, T)``; ``starts``/``ends``/``window`` ``(B,)``."""
        ids, mask = pad_batch([self.ids[i] for i in indices], pad_id=pad_id)
        context_mask = torch.zeros_like(mask)  # (B, T)
        for row, i in enumerate(indices):
            context_mask[row, :len(self.ids[i])] = self.offsets[i][:, 0] >= 0
        return {"ids": ids, "mask": mask, "context_mask": context_mask,
                "starts": torch.tensor([self.starts[i] for i in indices]),
                "ends": torch.tensor([self.ends[i] for i in indices]),
                "window": torch.tensor(list(indices))}

    def batches(self, *, batch_size: int, pad_id: int) -> Iterable[Batch]:
        """Evaluation batches in length order (no shuffling)."""
        sampler = BucketBatchSampler([len(x) for x in self.ids], batch_size=batch_size, shuffle=False)
        for indices in sampler.batches(0):
            yield self.collate(indices, pad_id=pad_id)


def answer_token_span(offsets: Sequence[Sequence[int]], start: int, end: int) -> tuple[int, int] | None:
    """The first and last context token of the character span ``[start, end)``, or None when the window's
    context tokens do not cover it wholly.

    Args:
        offsets: each token's ``(start, end)`` character span, ``(-1, -1)`` outside the context.
    """
    inside = [i for i, (first, _) in enumerate(offsets) if first >= 0]
    if not inside or offsets[inside[0]][0] > start or offsets[inside[-1]][1] < end:
        return None
    first = next(i for i in inside if offsets[i][1] > start)  # the first token ending after the answer's start
    last = next(i for i in reversed(inside) if offsets[i][0] < end)  # the last token starting before its end
    return (first, last) if first <= last else None


def _cut_questions(backend: tokenizers.Tokenizer, questions: Sequence[str], limit: int) -> list[str]:
    """Each question cut after its ``limit``-th token (by the token's character end)."""
    cut = list(questions)
    for i, encoding in enumerate(backend.encode_batch(list(questions), add_special_tokens=False)):
        if len(encoding.ids) > limit:
            cut[i] = questions[i][:encoding.offsets[limit - 1][1]]
    return cut


def make_windows(examples: Sequence[QAExample], tokenizer: Tokenizer, *, max_length: int = 384, stride: int = 128,
                 max_question_tokens: int = 64) -> QAWindows:
    """Tokenize each (question, context) pair into one or more windows of at most ``max_length`` tokens.

    Args:
        examples: the questions; the first answer of each, if any, labels its windows.
        tokenizer: a tokenizer with a pair template (``[CLS] A [SEP] B [SEP]`` or similar).
        max_length: tokens per window, special tokens included.
        stride: context tokens each window repeats from the one before.
        max_question_tokens: question tokens kept.

    Raises:
        ConfigError: the lengths leave no room: ``stride`` must be below the context tokens a window holds.
    """
    backend = tokenizers.Tokenizer.from_str(tokenizer.backend.to_str())
    backend.no_padding()
    specials = backend.num_special_tokens_to_add(True)
    room = max_length - max_question_tokens - specials
    if max_question_tokens < 1 or stride < 0 or room <= stride:
        raise ConfigError(f"windows of {max_length} tokens hold {room} context tokens after a question of up to "
                          f"{max_question_tokens} tokens and {specials} special tokens; expected max_question_tokens "
                          f">= 1 and 0 <= stride ({stride}) < {room} (raise data.max_length or lower the stride)")
    backend.no_truncation()
    questions = _cut_questions(backend, [e.question for e in examples], max_question_tokens)
    backend.enable_truncation(max_length, stride=stride, strategy="only_second")
    windows = QAWindows([], [], [], [], [])
    encodings = backend.encode_batch([(q, e.context) for q, e in zip(questions, examples, strict=True)])
    for index, (example, encoding) in enumerate(zip(examples, encodings, strict=True)):
        for window in (encoding, *encoding.overflowing):
            offsets = [span if kind == 1 else (-1, -1) for span, kind in zip(window.offsets, window.sequence_ids,
                                                                              strict=True)]
            span = None
            if example.answers:
                answer = example.answers[0]
                span = answer_token_span(offsets, answer.start, answer.start + len(answer.text))
            windows.ids.append(list(window.ids))
            windows.offsets.append(torch.tensor(offsets, dtype=torch.int32).reshape(-1, 2))  # (T, 2)
            windows.example.append(index)
            windows.starts.append(span[0] if span else 0)
            windows.ends.append(span[1] if span else 0)
    return windows
