"""``GenerationConfig``: one frozen, validated description of how to decode."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from multihead.errors import ConfigError
from multihead.limits import MAX_NEW_TOKENS, check_bound

__all__ = ["GenerationConfig"]


@dataclass(frozen=True, kw_only=True)
class GenerationConfig:
    """How ``generate`` and ``stream`` pick tokens and when they stop.

    Attributes:
        max_new_tokens: most tokens generated per sequence (the stop token counts as one).
        num_beams: beam width; 1 decodes greedily (or samples with ``do_sample``).
        do_sample: draw tokens from the (filtered) distribution instead of taking the argmax; needs
            ``num_beams == 1``.
        temperature: divides the logits before sampling (sampling only).
        top_k: sample among the ``top_k`` most likely tokens only (sampling only).
        top_p: sample from the smallest set of most likely tokens whose probability reaches ``top_p``
            (nucleus sampling; sampling only).
        repetition_penalty: CTRL-style penalty on tokens already in the sequence (a ``DecoderLM``'s
            prompt included; an ``EncoderDecoder``'s target side only): their positive logits are
            divided by it and their negative logits multiplied by it. ``Hypothesis.log_prob`` stays the
            unpenalised model's; beams are ranked by the penalised distribution.
        length_penalty: a finished beam scores ``sum log p / length ** length_penalty``.
        no_repeat_ngram_size: ``n > 0`` forbids any token that would complete an ``n``-gram already in the
            sequence (a ``DecoderLM``'s prompt included; an ``EncoderDecoder``'s target side only); 0 = off.
        min_new_tokens: the stop tokens (``eos_id``, ``stop_token_ids``) cannot be chosen before this many
            tokens are generated (stop strings still end a sequence); 0 = off.
        early_stopping: beam search stops a sentence as soon as ``num_beams`` hypotheses are finished;
            ``False`` goes on until no live beam can beat the worst finished one.
        num_return_sequences: size of the n-best list (``<= num_beams``) or number of samples per input.
        seed: seed of the local ``torch.Generator`` used for sampling (the global RNG is never touched);
            ``None`` draws a fresh seed.
        eos_id: end-of-sequence token; it ends a sequence and is not part of ``Hypothesis.tokens``.
        bos_id: the decoder start token of an ``EncoderDecoder`` (required there); for a ``DecoderLM``
            it stands in for an empty prompt.
        pad_id: token written at padded positions (they are masked); default the model's ``pad_id`` or 0.
        stop_token_ids: more tokens that end a sequence as ``eos_id`` does.
        stop_strings: texts that end a sequence once the decoded output contains them; the output text
            is cut before the stop string. Needs a ``decode`` callable.
        use_cache: reuse cached keys and values (one new token a step); ``False`` recomputes the
            whole prefix at every step (for tests and benchmarks).
        transposed_weights: on a CPU, multiply one- and two-row inputs by transposed copies of the model's
            large weights (:class:`multihead.generation.one_row.OneRowWeights`): batch-1 decoding reads the
            weights at full memory bandwidth, about 1.2x faster, at the cost of a second copy of those
            weights kept with the model for later calls.
        compile: run each decoding step (one new token a row, after the prompt) through ``torch.compile``
            over the preallocated key/value cache as fixed-shape buffers: a step writes its keys at the cache
            position and attends over every slot with a mask, so the shapes stay the same from step to step and
            nothing recompiles per step. The first call compiles (seconds to a minute); the graphs are kept for
            later calls of the same model. Needs ``use_cache``; ``DecoderLM`` and ``EncoderDecoder`` only (not
            ALiBi, whose bias needs the position as a number).
    """

    max_new_tokens: int = 128
    num_beams: int = 1
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    length_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    min_new_tokens: int = 0
    early_stopping: bool = True
    num_return_sequences: int = 1
    seed: int | None = None
    eos_id: int | None = None
    bos_id: int | None = None
    pad_id: int | None = None
    stop_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    use_cache: bool = True
    transposed_weights: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        for name in ("max_new_tokens", "num_beams", "num_return_sequences"):
            _check_int(name, getattr(self, name), minimum=1)
        check_bound("GenerationConfig.max_new_tokens", self.max_new_tokens, MAX_NEW_TOKENS)
        if self.top_k is not None:
            _check_int("top_k", self.top_k, minimum=1)
        for name in ("no_repeat_ngram_size", "min_new_tokens"):
            _check_int(name, getattr(self, name), minimum=0)
        for name in ("seed", "eos_id", "bos_id", "pad_id"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=0)
        for name in ("do_sample", "early_stopping", "use_cache", "transposed_weights", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"GenerationConfig.{name} must be True or False, got {getattr(self, name)!r:.80}")
        for name in ("temperature", "repetition_penalty"):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"GenerationConfig.{name} must be a finite number > 0, got {value!r:.80}")
        if not _is_real(self.length_penalty) or not math.isfinite(self.length_penalty):
            raise ConfigError(f"GenerationConfig.length_penalty must be a finite number, got "
                              f"{self.length_penalty!r:.80}")
        if self.top_p is not None and (not _is_real(self.top_p) or not 0.0 < self.top_p <= 1.0):
            raise ConfigError(f"GenerationConfig.top_p must be a number in (0, 1] or None, got {self.top_p!r:.80}")
        self._normalise_stops()
        if self.compile and not self.use_cache:
            raise ConfigError("GenerationConfig.compile compiles the cached decoding step; it needs use_cache=True")
        if self.compile and self.transposed_weights:
            raise ConfigError("GenerationConfig.compile and transposed_weights cannot be combined; choose one")
        if self.do_sample and self.num_beams > 1:
            raise ConfigError(
                f"GenerationConfig.num_beams must be 1 when do_sample=True (beam sampling is not supported), "
                f"got {self.num_beams}"
            )
        if self.num_beams > 1 and self.num_return_sequences > self.num_beams:
            raise ConfigError(
                f"GenerationConfig.num_return_sequences must be <= num_beams ({self.num_beams}), "
                f"got {self.num_return_sequences}"
            )
        if self.num_beams == 1 and not self.do_sample and self.num_return_sequences != 1:
            raise ConfigError(
                f"GenerationConfig.num_return_sequences must be 1 for greedy decoding (set num_beams or "
                f"do_sample for more), got {self.num_return_sequences}"
            )

    def _normalise_stops(self) -> None:
        """Check the stop tokens and strings; lists are accepted and stored as tuples."""
        if isinstance(self.stop_token_ids, int | str) or not hasattr(self.stop_token_ids, "__iter__"):
            raise ConfigError(
                f"GenerationConfig.stop_token_ids must be a tuple of token ids, got {self.stop_token_ids!r:.80}"
            )
        stop_ids = tuple(self.stop_token_ids)
        for token in stop_ids:
            _check_int("stop_token_ids", token, minimum=0)
        if isinstance(self.stop_strings, str) or not hasattr(self.stop_strings, "__iter__"):
            raise ConfigError(f"GenerationConfig.stop_strings must be a tuple of strings, got "
                              f"{self.stop_strings!r:.80}")
        strings = tuple(self.stop_strings)
        for text in strings:
            if not isinstance(text, str) or not text:
                raise ConfigError(f"GenerationConfig.stop_strings must hold non-empty strings, got {text!r:.80}")
        object.__setattr__(self, "stop_token_ids", stop_ids)
        object.__setattr__(self, "stop_strings", strings)

    @property
    def stop_ids(self) -> frozenset[int]:
        """Every token that ends a sequence: ``eos_id`` and ``stop_token_ids``."""
        ids = set(self.stop_token_ids)
        if self.eos_id is not None:
            ids.add(self.eos_id)
        return frozenset(ids)

    def replace(self, **changes: Any) -> GenerationConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)


def _is_real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"GenerationConfig.{name} must be an integer >= {minimum}, got {value!r:.80}")
