"""Generation on onnxruntime: ``OnnxDecodingState`` runs an exported ``DecoderLM`` or ``EncoderDecoder`` (prefill
and step graphs) behind the interface of :class:`multihead.generation.DecodingState`, so that the library's own
greedy search, sampling and beam search (``TokenSearch``, ``BeamSearch``) drive it unchanged.

The key/value cache lives in numpy arrays, one pair per layer, passed into each step and returned one position
longer; beams reorder them with ``take``. Token ids, the key mask and positions are kept as ``DecodingState``
keeps them, so both runtimes feed the model the same numbers.

Shape legend: ``N`` rows, ``P`` prompt (or source) length, ``L`` tokens so far, ``V`` vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from multihead.errors import ConfigError, LimitError
from multihead.export.runtime import OnnxModel, require_architecture
from multihead.generation import BeamSearch, GenerationConfig, Hypothesis, Stopping, TokenSearch
from multihead.masks import padding_mask_from_lengths

__all__ = ["OnnxDecodingState", "generate_onnx", "stream_onnx"]

Decode = Callable[[list[int]], str]
_DECODERS = ("DecoderLM", "EncoderDecoder")


class OnnxDecodingState:
    """The rows being decoded by exported graphs: ``prefill``, ``advance`` and ``select`` as in ``DecodingState``.

    Args:
        model: an exported ``DecoderLM`` or ``EncoderDecoder``.
        inputs: prompts (left-padded together) or sources (right-padded), one token list per row.
        max_new_tokens: most tokens each row will be given.
        bos_id: the decoder start token (``EncoderDecoder`` only).
        pad_id: token id written at padded positions (masked everywhere).
    """

    def __init__(self, model: OnnxModel, inputs: Sequence[list[int]], *, max_new_tokens: int, bos_id: int | None,
                 pad_id: int) -> None:
        require_architecture(model, _DECODERS, use="generation")
        self.model, self.max_new_tokens = model, max_new_tokens
        self.seq2seq = model.architecture == "EncoderDecoder"
        self.cache: list[np.ndarray] = []  # [key0, value0, key1, value1, ...], (N, H, L, Dh) each
        self.cross: list[np.ndarray] = []  # the same over the source, (N, H, S, Dh) each
        lengths = torch.tensor([len(row) for row in inputs])  # (N,)
        longest = int(lengths.max())
        if self.seq2seq:
            if bos_id is None:
                raise ConfigError("an EncoderDecoder needs GenerationConfig.bos_id (the decoder start token)")
            self.source = torch.full((len(inputs), longest), pad_id, dtype=torch.long)  # (N, S), right-padded
            for row, tokens in enumerate(inputs):
                self.source[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            self.source_mask = padding_mask_from_lengths(lengths, longest)  # (N, S)
            self._ids = torch.full((len(inputs), 1 + max_new_tokens), pad_id, dtype=torch.long)  # (N, 1 + new)
            self._ids[:, 0] = bos_id
            self.length = 1
            self._key_mask: Tensor | None = None
        else:
            self._ids = torch.full((len(inputs), longest + max_new_tokens), pad_id, dtype=torch.long)  # (N, P + new)
            for row, tokens in enumerate(inputs):
                self._ids[row, longest - len(tokens):longest] = torch.tensor(tokens, dtype=torch.long)
            self.length = longest
            padded = bool((lengths < longest).any())
            self._key_mask = (padding_mask_from_lengths(longest - lengths, longest + max_new_tokens).logical_not()
                              if padded else None)  # (N, P + new)
            self.next_position = lengths.clone()  # (N,)

    @property
    def ids(self) -> Tensor:
        """Token ids so far ``(N, L)``."""
        return self._ids[:, :self.length]

    @property
    def key_mask(self) -> Tensor | None:
        """Real-token mask of the ids so far ``(N, L)``; ``None`` when no row is padded."""
        return None if self._key_mask is None else self._key_mask[:, :self.length]

    @property
    def rows(self) -> int:
        return self.ids.shape[0]

    def history(self) -> tuple[Tensor, Tensor | None]:
        """Token ids so far ``(N, L)`` and their real-token mask (``None`` when no row is padded)."""
        return self.ids, self.key_mask

    def prefill(self) -> Tensor:
        """Run the prompts (or encode the sources and run BOS); returns next-token logits ``(N, V)``."""
        layers = self.model.layers
        if self.seq2seq:
            outputs = self.model.run("prefill", {"source_ids": self.source.numpy(),
                                                 "source_mask": self.source_mask.numpy(),
                                                 "target_ids": self.ids.numpy()})
            self.cache, self.cross = outputs[1:1 + 2 * layers], outputs[1 + 2 * layers:]
        else:
            mask = self._mask()
            positions = (mask.long().cumsum(dim=1) - 1).clamp(min=0)  # (N, L) from 0 at each row's first token
            outputs = self.model.run("prefill", {"ids": self.ids.numpy(), "mask": mask.numpy(),
                                                 "position_ids": positions.numpy()})
            self.cache = outputs[1:]
        return torch.from_numpy(outputs[0])

    def advance(self, tokens: Tensor) -> Tensor:
        """Append ``tokens`` ``(N,)``, one per row; returns the next-token logits ``(N, V)``."""
        if tokens.shape != (self.rows,):
            raise ValueError(f"advance expects one token per row, shape ({self.rows},), got {tuple(tokens.shape)}")
        if self.length == self._ids.shape[1]:
            raise ValueError(f"advance past max_new_tokens={self.max_new_tokens}")
        new = tokens.to(dtype=torch.long)[:, None]  # (N, 1)
        self._ids[:, self.length] = new[:, 0]
        self.length += 1
        past = dict(zip(_names("past", self.model.layers), self.cache, strict=True))
        if self.seq2seq:
            cross = dict(zip(_names("cross", self.model.layers), self.cross, strict=True))
            outputs = self.model.run("step", {"ids": new.numpy(), "source_mask": self.source_mask.numpy(),
                                              **past, **cross})
        else:
            positions = self.next_position[:, None]  # (N, 1)
            self.next_position = self.next_position + 1
            outputs = self.model.run("step", {"ids": new.numpy(), "mask": self._mask().numpy(),
                                              "position_ids": positions.numpy(), **past})
        self.cache = outputs[1:]
        return torch.from_numpy(outputs[0])

    def select(self, index: Tensor, *, same_sources: bool = False) -> None:
        """Keep rows ``index`` ``(N',)`` in that order: drop finished rows, repeat rows, reorder beams;
        ``same_sources`` as in ``DecodingState.select`` (the source rows and cross caches stay)."""
        index = index.to(dtype=torch.long)
        if index.numel() == self.rows and bool((index == torch.arange(self.rows)).all()):
            return
        self._ids = self._ids.index_select(0, index)
        if self._key_mask is not None:
            self._key_mask = self._key_mask.index_select(0, index)
        rows = index.numpy()
        self.cache = [array.take(rows, axis=0) for array in self.cache]
        if self.seq2seq:
            if not same_sources:
                self.source = self.source.index_select(0, index)
                self.source_mask = self.source_mask.index_select(0, index)
                self.cross = [array.take(rows, axis=0) for array in self.cross]
        else:
            self.next_position = self.next_position.index_select(0, index)

    def _mask(self) -> Tensor:
        """The key mask the graphs take ``(N, L)``: all True when no row is padded."""
        mask = self.key_mask
        return torch.ones(self.ids.shape, dtype=torch.bool) if mask is None else mask


def _names(prefix: str, layers: int) -> list[str]:
    return [f"{prefix}.{layer}.{kind}" for layer in range(layers) for kind in ("key", "value")]


def generate_onnx(model: OnnxModel, inputs: Sequence[Sequence[int]], config: GenerationConfig, *,
                  decode: Decode | None = None, batch_size: int = 32) -> list[list[Hypothesis]]:
    """``multihead.generation.generate`` on exported graphs: per input, its n-best list (best first).

    Inputs are sorted by length and decoded ``batch_size`` at a time, as ``generate`` does, so both runtimes
    batch the same rows. ``GenerationConfig.use_cache``, ``compile`` and ``transposed_weights`` are PyTorch's
    concerns and are not read: the graphs always decode with their cache.
    """
    rows = _check(model, inputs, config, decode)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r:.40}")
    stopping = Stopping(config.stop_ids, config.stop_strings, decode)
    generator = _generator(config)
    order = sorted(range(len(rows)), key=lambda index: len(rows[index]), reverse=True)
    results: list[list[Hypothesis]] = [[] for _ in rows]
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        search = _search(model, [rows[index] for index in chunk], config, stopping, generator)
        for _ in search.run():
            pass
        for index, hypotheses in zip(chunk, search.results(), strict=True):
            results[index] = hypotheses
    return results


def stream_onnx(model: OnnxModel, inputs: Sequence[int], config: GenerationConfig, *, decode: Decode
                ) -> Iterator[str]:
    """``multihead.generation.stream`` on exported graphs: the text so far after every step."""
    rows = _check(model, [inputs], config, decode)
    stopping = Stopping(config.stop_ids, config.stop_strings, decode)
    search = _search(model, rows, config, stopping, _generator(config))
    last: str | None = None
    for _ in search.run():
        last = stopping.text(search.current_best(0))
        assert last is not None
        yield last
    final = search.results()[0][0].text
    if final is not None and final != last:
        yield final


def _search(model: OnnxModel, rows: list[list[int]], config: GenerationConfig, stopping: Stopping,
            generator: torch.Generator | None) -> TokenSearch | BeamSearch:
    pad_id = config.pad_id
    if pad_id is None:
        pad_id = model.model_config.pad_id if model.model_config.pad_id is not None else 0
    state = OnnxDecodingState(model, rows, max_new_tokens=config.max_new_tokens, bos_id=config.bos_id, pad_id=pad_id)
    if config.num_beams > 1:
        return BeamSearch(state, config, stopping)  # type: ignore[arg-type]
    return TokenSearch(state, config, stopping, generator)  # type: ignore[arg-type]


def _generator(config: GenerationConfig) -> torch.Generator | None:
    if not config.do_sample:
        return None
    generator = torch.Generator()
    if config.seed is None:
        generator.seed()
    else:
        generator.manual_seed(config.seed)
    return generator


def _check(model: OnnxModel, inputs: Sequence[Sequence[int]], config: GenerationConfig, decode: Decode | None
           ) -> list[list[int]]:
    """The inputs as lists of ints, checked against the exported model's vocabularies and positions."""
    require_architecture(model, _DECODERS, use="generation")
    if not isinstance(config, GenerationConfig):
        raise ConfigError(f"config must be a GenerationConfig, got {type(config).__name__}")
    if config.stop_strings and decode is None:
        raise ConfigError(f"GenerationConfig.stop_strings {config.stop_strings!r:.80} need a decode callable")
    seq2seq = model.architecture == "EncoderDecoder"
    sizes = model.model_config
    if seq2seq and config.bos_id is None:
        raise ConfigError("GenerationConfig.bos_id is required for an EncoderDecoder (the decoder start token)")
    for name, token in [("eos_id", config.eos_id), ("bos_id", config.bos_id),
                        *(("stop_token_ids", token) for token in config.stop_token_ids)]:
        if token is not None and token >= sizes.output_vocab_size:
            raise ConfigError(f"GenerationConfig.{name} {token} is outside the vocabulary "
                              f"(0..{sizes.output_vocab_size - 1})")
    if config.num_beams > sizes.output_vocab_size:
        raise ConfigError(f"GenerationConfig.num_beams {config.num_beams} exceeds the vocabulary size "
                          f"{sizes.output_vocab_size}")
    if isinstance(inputs, str | bytes):
        raise ConfigError("inputs must be a sequence of token-id sequences, got a string")
    rows = []
    for index, row in enumerate(inputs):
        if isinstance(row, int):
            raise ConfigError(f"inputs[{index}] is a single token id {row}; wrap one input in a list: [ids]")
        tokens = [int(token) for token in row]
        if not tokens and not seq2seq and config.bos_id is not None:
            tokens = [config.bos_id]
        if not tokens:
            raise ConfigError(f"inputs[{index}] is empty; expected at least one token")
        bad = [token for token in tokens if not 0 <= token < sizes.vocab_size]
        if bad:
            raise ConfigError(f"inputs[{index}] has token id {bad[0]} outside the vocabulary "
                              f"(0..{sizes.vocab_size - 1})")
        rows.append(tokens)
    longest = max((len(row) for row in rows), default=0)
    needed = config.max_new_tokens if seq2seq else longest + config.max_new_tokens - 1
    if sizes.positions == "learned" and max(needed, longest) > sizes.max_length:
        raise LimitError(f"GenerationConfig.max_new_tokens {config.max_new_tokens} with inputs of up to {longest} "
                         f"tokens needs {max(needed, longest)} learned positions; the model has {sizes.max_length}")
    return rows
