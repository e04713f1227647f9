"""A saved question-answering model in use: load it, window questions the way it was trained, answer, score.

``QAModel`` holds the ``SpanExtractor``, its tokenizer and its windowing (the ``qa`` section of ``config.json``);
``answer_questions``, ``answer_file`` and ``evaluate_examples`` are the functions ``multihead answer`` and
``multihead eval`` call; the server keeps one ``QAModel`` per served QA model.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from multihead.data.qa_windows import QAWindows, make_windows
from multihead.data.squad import QAExample, read_qa_file, squad_references
from multihead.errors import CheckpointError, ConfigError
from multihead.model_dir import load_model_dir
from multihead.models import SpanExtractor
from multihead.squad_metric import squad_scores
from multihead.tasks.qa_decode import SpanAnswer, SpanCollector, predict_answers
from multihead.tokenizers import Tokenizer

__all__ = ["MAX_ANSWER_TOKENS", "MAX_QUESTION_TOKENS", "QAModel", "answer_file", "answer_questions",
           "evaluate_examples", "qa_windows"]

MAX_QUESTION_TOKENS = 64
"""Question tokens kept in a window (longer questions are cut; SQuAD's longest dev question has 61 MiniLM tokens)."""
MAX_ANSWER_TOKENS = 30
"""Longest answer span decoded, in tokens (the usual SQuAD setting)."""


def qa_windows(examples: Sequence[QAExample], tokenizer: Tokenizer, settings: Mapping[str, Any]) -> QAWindows:
    """The windows of ``examples`` with a model's ``qa`` settings (``max_length``, ``doc_stride``,
    ``max_question_tokens``)."""
    return make_windows(examples, tokenizer, max_length=int(settings["max_length"]),
                        stride=int(settings["doc_stride"]),
                        max_question_tokens=int(settings.get("max_question_tokens", MAX_QUESTION_TOKENS)))


@dataclass
class QAModel:
    """A loaded question-answering model.

    Attributes:
        model: the ``SpanExtractor`` (eval mode; calls only read its weights, so threads may share it).
        tokenizer: its tokenizer.
        settings: the windowing it was trained with (``max_length``, ``doc_stride``, ``max_question_tokens``,
            ``max_answer_tokens``).
        config: the directory's whole ``config.json``.
    """

    model: nn.Module
    tokenizer: Tokenizer
    settings: dict[str, Any]
    config: dict[str, Any]

    @classmethod
    def load(cls, model_dir: str | Path) -> QAModel:
        """Read a directory written by ``train_qa``."""
        loaded = load_model_dir(model_dir)
        settings = loaded.config.get("qa")
        if not isinstance(loaded.model, SpanExtractor) or loaded.tokenizer is None or not isinstance(settings, dict):
            raise CheckpointError(f"{model_dir}: not a question-answering model (expected a SpanExtractor with "
                                  f"tokenizer.json and a \"qa\" section in config.json, got "
                                  f"{loaded.config.get('architecture')!r})")
        return cls(loaded.model.eval(), loaded.tokenizer, settings, loaded.config)

    def answer_limit(self, max_answer_tokens: int | None) -> int:
        limit = int(max_answer_tokens or self.settings.get("max_answer_tokens", MAX_ANSWER_TOKENS))
        if limit < 1:
            raise ConfigError(f"max_answer_tokens must be >= 1, got {limit}")
        return limit

    def answer_examples(self, examples: Sequence[QAExample], *, max_answer_tokens: int | None = None,
                        batch_size: int = 32) -> tuple[SpanCollector, int]:
        """The best span of every question (collected over its windows), and the number of windows run."""
        limit = self.answer_limit(max_answer_tokens)
        windows = qa_windows(examples, self.tokenizer, self.settings)
        with torch.inference_mode():
            collector = predict_answers(self.model, windows, examples, pad_id=self.tokenizer.pad_id or 0,
                                        max_answer_tokens=limit, batch_size=batch_size)
        return collector, len(windows)

    def answer(self, questions: Sequence[str], contexts: Sequence[str], *, max_answer_tokens: int | None = None,
               batch_size: int = 32) -> list[SpanAnswer | None]:
        """The best answer span of each question in its context (None only for a context without a token)."""
        if isinstance(questions, str) or isinstance(contexts, str):
            raise TypeError("questions and contexts must be sequences of strings; wrap a single one in a list")
        if len(questions) != len(contexts):
            raise ConfigError(f"{len(questions)} questions but {len(contexts)} contexts; expected one context each")
        for i, (question, context) in enumerate(zip(questions, contexts, strict=True)):
            if not question.strip() or not context.strip():
                raise ConfigError(f"question {i}: the {'question' if not question.strip() else 'context'} is empty; "
                                  f"expected text")
        examples = [QAExample(id=str(i), question=q, context=c, answers=())
                    for i, (q, c) in enumerate(zip(questions, contexts, strict=True))]
        collector, _ = self.answer_examples(examples, max_answer_tokens=max_answer_tokens, batch_size=batch_size)
        return collector.answers()


def answer_questions(model_dir: str | Path, questions: Sequence[str], contexts: Sequence[str], *,
                     max_answer_tokens: int | None = None, batch_size: int = 32) -> list[SpanAnswer | None]:
    """:meth:`QAModel.answer` of the model in ``model_dir`` (a directory written by ``train_qa``).

    Args:
        questions, contexts: one context per question.
        max_answer_tokens: longest answer, in tokens (default: the model's, 30).
    """
    return QAModel.load(model_dir).answer(questions, contexts, max_answer_tokens=max_answer_tokens,
                                          batch_size=batch_size)


def evaluate_examples(model_dir: str | Path, examples: Sequence[QAExample], *, split: str | None = None,
                      data: str | None = None, max_answer_tokens: int | None = None,
                      batch_size: int = 64) -> dict[str, Any]:
    """Exact match and F1 (official v1.1 scoring) of a saved model on labelled questions, with wall and CPU time,
    the first three predictions and every prediction (``predictions``: id -> text)."""
    started, cpu = time.perf_counter(), time.process_time()
    loaded = QAModel.load(model_dir)
    collector, windows = loaded.answer_examples(examples, max_answer_tokens=max_answer_tokens, batch_size=batch_size)
    predictions = collector.predictions()
    scores = squad_scores(predictions, squad_references(examples))
    shown = [{"question": e.question, "prediction": predictions[e.id], "answers": [a.text for a in e.answers]}
             for e in examples[:3]]
    return {"split": split, "data": data, **scores, "windows": windows,
            "max_answer_tokens": loaded.answer_limit(max_answer_tokens),
            "seconds": round(time.perf_counter() - started, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
            "threads": torch.get_num_threads(), "examples": shown, "predictions": predictions}


def answer_file(model_dir: str | Path, path: str | Path, *, max_answer_tokens: int | None = None,
                batch_size: int = 64) -> tuple[dict[str, str], dict[str, Any] | None]:
    """Answer every question of a SQuAD JSON or JSON lines file.

    Returns:
        The predictions in the official format (question id -> answer text), and exact match/F1 when every
        question of the file has reference answers (None otherwise).
    """
    examples = read_qa_file(path, require_answers=False)
    collector, _ = QAModel.load(model_dir).answer_examples(examples, max_answer_tokens=max_answer_tokens,
                                                           batch_size=batch_size)
    predictions = collector.predictions()
    labelled = all(example.answers for example in examples)
    return predictions, squad_scores(predictions, squad_references(examples)) if labelled else None
