"""``Hypothesis``: one decoded output with its scores, and ``Stopping``: when an output ends and its text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Hypothesis", "Stopping", "penalised_score"]


@dataclass
class Hypothesis:
    """One generated sequence.

    Attributes:
        tokens: the generated tokens only: no prompt, no BOS, and not the stop token (eos or one of
            ``stop_token_ids``) that ended it, which is kept in ``stop_token``. A sequence ended by a
            stop string keeps every token it generated; only ``text`` is cut.
        score: the length-penalised beam score ``ranked_sum / length ** length_penalty``; for greedy
            decoding and sampling it equals ``log_prob``. ``ranked_sum`` is ``log_prob`` unless a
            repetition penalty changed the distribution the beams were ranked by.
        log_prob: sum of the model's log-probabilities of ``tokens`` and of ``stop_token`` if any.
        text: ``decode(tokens)`` cut before the first stop string, when a ``decode`` callable was given.
        finished: ended by a stop token or stop string rather than by ``max_new_tokens``.
        stop_token: the token that ended the sequence, ``None`` otherwise.
    """

    tokens: list[int]
    score: float
    log_prob: float
    text: str | None = None
    finished: bool = False
    stop_token: int | None = None

    @property
    def length(self) -> int:
        """Scored tokens: ``tokens`` plus the stop token if one ended the sequence."""
        return len(self.tokens) + (self.stop_token is not None)


def penalised_score(total: float, length: int, length_penalty: float) -> float:
    """``total / length ** length_penalty`` (Hugging Face's convention)."""
    return total / (max(length, 1) ** length_penalty)


class Stopping:
    """The ways a sequence ends (stop tokens, stop strings) and the text of a hypothesis.

    Args:
        stop_ids: tokens that end a sequence (eos and the other stop tokens).
        stop_strings: texts that end a sequence once ``decode(tokens)`` contains one of them.
        decode: token ids -> text; required when ``stop_strings`` are given.
    """

    def __init__(
        self,
        stop_ids: frozenset[int],
        stop_strings: Sequence[str] = (),
        decode: Callable[[list[int]], str] | None = None,
    ) -> None:
        if stop_strings and decode is None:
            raise ValueError(f"stop_strings {tuple(stop_strings)!r} need a decode callable (token ids -> text)")
        self.stop_ids = stop_ids
        self.stop_strings = tuple(stop_strings)
        self.decode = decode

    def is_stop_token(self, token: int) -> bool:
        return token in self.stop_ids

    def hits_string(self, tokens: list[int]) -> bool:
        """Whether the decoded ``tokens`` contain a stop string."""
        if not self.stop_strings:
            return False
        text = self._decode(tokens)
        return any(stop in text for stop in self.stop_strings)

    def text(self, tokens: list[int]) -> str | None:
        """``decode(tokens)`` cut before the earliest stop string; ``None`` without ``decode``."""
        if self.decode is None:
            return None
        text = self._decode(tokens)
        cuts = [text.find(stop) for stop in self.stop_strings]
        cuts = [cut for cut in cuts if cut >= 0]
        return text[: min(cuts)] if cuts else text

    def hypothesis(
        self,
        tokens: list[int],
        *,
        log_prob: float,
        score: float,
        finished: bool,
        stop_token: int | None = None,
    ) -> Hypothesis:
        """A ``Hypothesis`` with its text filled in."""
        return Hypothesis(tokens=list(tokens), score=score, log_prob=log_prob, text=self.text(tokens),
                          finished=finished, stop_token=stop_token)

    def _decode(self, tokens: list[int]) -> str:
        assert self.decode is not None
        text = self.decode(list(tokens))
        if not isinstance(text, str):
            raise ValueError(f"decode must return a str, got {type(text).__name__} for tokens {tokens[:8]}...")
        return text
