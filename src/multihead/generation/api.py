"""``generate`` (batched decoding of many inputs) and ``stream`` (the text of one input, step by step)."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from multihead.errors import ConfigError, LimitError
from multihead.generation.beam import BeamSearch
from multihead.generation.config import GenerationConfig
from multihead.generation.greedy import TokenSearch
from multihead.generation.hypothesis import Hypothesis, Stopping
from multihead.generation.one_row import OneRowWeights
from multihead.generation.state import ENCODER_DECODERS, LANGUAGE_MODELS, DecodingState, GenerativeModel
from multihead.limits import physical_memory

__all__ = ["generate", "stream"]

Decode = Callable[[list[int]], str]
_EXHAUSTED = object()


def generate(
    model: GenerativeModel,
    inputs: Sequence[Sequence[int]],
    config: GenerationConfig,
    *,
    decode: Decode | None = None,
    batch_size: int = 32,
    on_forward: Callable[[torch.Tensor], None] | None = None,
) -> list[list[Hypothesis]]:
    """Decode every input; returns, per input and in input order, its n-best list (best first).

    Args:
        model: a ``DecoderLM`` (inputs are prompts; the output continues them) or an ``EncoderDecoder``
            (inputs are source token ids; decoding starts from ``config.bos_id``).
        inputs: token-id sequences of any lengths; they are sorted by length and batched.
        config: search, sampling and stopping settings.
        decode: token ids -> text; fills ``Hypothesis.text`` and is needed for ``stop_strings``.
        batch_size: inputs decoded together (a beam search runs ``batch_size * num_beams`` rows).
        on_forward: called with the token ids so far of every row ``(N, L)`` before each model call
            (``multihead.inspect`` uses it to follow the chosen beam).

    Returns:
        ``len(inputs)`` lists of ``config.num_return_sequences`` hypotheses each, sorted by score.
    """
    rows = _check(model, inputs, config, decode)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r:.80}")
    stopping = Stopping(config.stop_ids, config.stop_strings, decode)
    generator = _generator(model, config)
    order = sorted(range(len(rows)), key=lambda index: len(rows[index]), reverse=True)  # less padding
    results: list[list[Hypothesis]] = [[] for _ in rows]
    one_row = _one_row_weights(model, config)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        with _decoding(model), one_row():
            search = _search(model, [rows[index] for index in chunk], config, stopping, generator, on_forward)
            for _ in search.run():
                pass
        for index, hypotheses in zip(chunk, search.results(), strict=True):
            results[index] = hypotheses
    return results


def stream(
    model: GenerativeModel,
    inputs: Sequence[int],
    config: GenerationConfig,
    *,
    decode: Decode,
) -> Iterator[str]:
    """Decode one input and yield its full text so far after every step.

    For beam search (or several samples) the text is that of the current best hypothesis, which may
    change from one step to the next. The last text yielded equals ``generate(...)[0][0].text``.
    """
    rows = _check(model, [inputs], config, decode)
    stopping = Stopping(config.stop_ids, config.stop_strings, decode)
    generator = _generator(model, config)
    one_row = _one_row_weights(model, config)
    with _decoding(model):
        search = _search(model, rows, config, stopping, generator)
        steps = search.run()
    last: str | None = None
    while True:
        with _decoding(model), one_row():  # entered per step: nothing leaks into the caller between yields
            if next(steps, _EXHAUSTED) is _EXHAUSTED:
                break
            text = stopping.text(search.current_best(0))
        assert text is not None
        last = text
        yield text
    final = search.results()[0][0].text
    assert final is not None
    if final != last:
        yield final


def _search(
    model: GenerativeModel,
    rows: list[list[int]],
    config: GenerationConfig,
    stopping: Stopping,
    generator: torch.Generator | None,
    on_forward: Callable[[torch.Tensor], None] | None = None,
) -> TokenSearch | BeamSearch:
    """The search that ``config`` asks for over a fresh ``DecodingState`` of ``rows``."""
    pad_id = config.pad_id
    if pad_id is None:
        pad_id = model.config.pad_id if model.config.pad_id is not None else 0
    state = DecodingState(model, rows, max_new_tokens=config.max_new_tokens, use_cache=config.use_cache,
                          bos_id=config.bos_id, pad_id=pad_id, on_forward=on_forward, compile=config.compile)
    if config.num_beams > 1:
        return BeamSearch(state, config, stopping)
    return TokenSearch(state, config, stopping, generator)


def _generator(model: nn.Module, config: GenerationConfig) -> torch.Generator | None:
    """A local random generator for sampling, seeded by ``config.seed`` (fresh entropy without one)."""
    if not config.do_sample:
        return None
    generator = torch.Generator(device=next(model.parameters()).device)
    if config.seed is None:
        generator.seed()
    else:
        generator.manual_seed(config.seed)
    return generator


_ONE_ROW_WEIGHTS: weakref.WeakKeyDictionary[nn.Module, OneRowWeights] = weakref.WeakKeyDictionary()
"""Transposed weight copies per model (``GenerationConfig.transposed_weights``), kept for later calls."""


def _one_row_weights(model: nn.Module, config: GenerationConfig) -> Callable[[], contextlib.AbstractContextManager]:
    """What to enter around each decoding step: the model's transposed copies when asked for, else nothing."""
    if not config.transposed_weights:
        return contextlib.nullcontext
    if model not in _ONE_ROW_WEIGHTS:
        _ONE_ROW_WEIGHTS[model] = OneRowWeights(model)
    return _ONE_ROW_WEIGHTS[model].active


@contextlib.contextmanager
def _decoding(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) and ``torch.inference_mode``; the model's training flag is restored after."""
    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(training)


def _check(
    model: GenerativeModel, inputs: Sequence[Sequence[int]], config: GenerationConfig, decode: Decode | None
) -> list[list[int]]:
    """Validate the arguments of ``generate``/``stream``; returns the inputs as lists of ints."""
    if not isinstance(model, ENCODER_DECODERS + LANGUAGE_MODELS):
        raise ValueError("model must be an RNNEncoderDecoder, LSTMLanguageModel, DecoderLM or an EncoderDecoder, "
                         f"got {type(model).__name__}")
    if not isinstance(config, GenerationConfig):
        raise ValueError(f"config must be a GenerationConfig, got {type(config).__name__}")
    if config.stop_strings and decode is None:
        raise ConfigError(f"GenerationConfig.stop_strings {config.stop_strings!r:.80} need a decode callable")
    seq2seq = isinstance(model, ENCODER_DECODERS)
    in_vocab, out_vocab = model.config.vocab_size, model.config.output_vocab_size
    if seq2seq and config.bos_id is None:
        raise ConfigError("GenerationConfig.bos_id is required for an EncoderDecoder (the decoder start token)")
    named = [("eos_id", config.eos_id), ("bos_id", config.bos_id)]
    named += [("stop_token_ids", token) for token in config.stop_token_ids]
    for name, token in named:
        if token is not None and token >= out_vocab:
            raise ConfigError(f"GenerationConfig.{name} {token} is outside the vocabulary (0..{out_vocab - 1})")
    if config.pad_id is not None and config.pad_id >= in_vocab:
        raise ConfigError(f"GenerationConfig.pad_id {config.pad_id} is outside the vocabulary (0..{in_vocab - 1})")
    if config.num_beams > out_vocab:
        raise ConfigError(f"GenerationConfig.num_beams {config.num_beams} exceeds the vocabulary size {out_vocab}")
    if isinstance(inputs, str | bytes) or not isinstance(inputs, Sequence | torch.Tensor):
        raise ConfigError(f"inputs must be a sequence of token-id sequences, got {type(inputs).__name__}")
    rows = []
    for index, row in enumerate(inputs):
        if isinstance(row, int) or (isinstance(row, torch.Tensor) and row.dim() == 0):
            raise ConfigError(f"inputs[{index}] is a single token id {int(row)}; wrap one input in a list: [ids]")
        tokens = [int(token) for token in row]
        if not tokens and not seq2seq and config.bos_id is not None:
            tokens = [config.bos_id]
        if not tokens:
            expected = "a source token" if seq2seq else "a prompt token (or set GenerationConfig.bos_id)"
            raise ConfigError(f"inputs[{index}] is empty; expected at least {expected}")
        bad = [token for token in tokens if not 0 <= token < in_vocab]
        if bad:
            raise ConfigError(f"inputs[{index}] has token id {bad[0]} outside the vocabulary (0..{in_vocab - 1})")
        rows.append(tokens)
    _check_positions(model, rows, config)
    return rows


def _check_positions(model: GenerativeModel, rows: list[list[int]], config: GenerationConfig) -> None:
    """The output must fit: learned absolute positions stop at ``max_length``, and the preallocated key/value
    cache (every layer, every row of every beam) must fit in half this machine's memory. Recurrent models have
    neither limit."""
    if not rows or not hasattr(model.config, "positions"):
        return
    longest = max(len(row) for row in rows)
    needed = config.max_new_tokens if isinstance(model, ENCODER_DECODERS) else longest + config.max_new_tokens - 1
    limit = model.config.max_length
    if model.config.positions == "learned" and (needed > limit or longest > limit):
        raise LimitError(
            f"GenerationConfig.max_new_tokens {config.max_new_tokens} with inputs of up to {longest} tokens needs "
            f"{max(needed, longest)} learned positions; the model has max_length {limit}"
        )
    width = (model.config.n_kv_heads or model.config.n_heads) * model.config.head_dim
    layers = getattr(model.config, "decoder_layers", model.config.n_layers)
    beams = max(config.num_beams, config.num_return_sequences)
    weight = next(model.parameters())
    cache_bytes = 2 * layers * len(rows) * beams * (needed + 1) * width * weight.element_size()
    memory = physical_memory()
    if memory is not None and cache_bytes > memory // 2:
        raise LimitError(
            f"GenerationConfig.max_new_tokens {config.max_new_tokens:,} for {len(rows)} input(s) x {beams} beam(s) "
            f"needs a key/value cache of {cache_bytes / 1e9:.1f} GB, more than half this machine's memory "
            f"({memory / 1e9:.1f} GB); ask for fewer tokens (the model's context is {limit:,} positions)"
        )
