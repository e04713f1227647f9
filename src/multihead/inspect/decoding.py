"""Attention of a generated output: captured during generation (following the chosen beam), or by one
teacher-forced forward pass over the finished output. The two agree; tests check it.

Shape legend: ``H`` captured heads, ``T`` decoder positions (the prompt and the fed generated tokens, or
BOS and the fed generated tokens), ``S`` source length, ``N`` rows being decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from multihead.generation import GenerationConfig, Hypothesis, generate
from multihead.inspect.capture import Kind, Site, capture_attention
from multihead.models.decoder import DecoderLM
from multihead.models.seq2seq import EncoderDecoder

__all__ = ["DecodedAttention", "generate_with_attention", "teacher_forced_attention"]


@dataclass
class DecodedAttention:
    """The best hypothesis and the attention that produced it.

    ``sequence`` holds the decoder's input tokens the weights' query rows belong to: the prompt (LM) or
    BOS (encoder-decoder) followed by the generated tokens that were fed back (a stop token is never fed;
    when ``max_new_tokens`` ends the output, its last token is not fed either). ``weights`` maps each
    site to ``(H, T, T)`` (decoder self), ``(H, T, S)`` (cross) or ``(H, S, S)`` (encoder self).
    """

    hypothesis: Hypothesis
    sequence: list[int]
    weights: dict[Site, Tensor]


def generate_with_attention(
    model: DecoderLM | EncoderDecoder,
    inputs: Sequence[int],
    config: GenerationConfig,
    *,
    decode: Callable[[list[int]], str] | None = None,
    layers: Iterable[int] | None = None,
    heads: Iterable[int] | None = None,
    kinds: Iterable[Kind] = ("self", "cross"),
) -> DecodedAttention:
    """Decode one input with ``generate`` while capturing attention, one step at a time.

    Each step runs the rows of every live beam (or sample); the rows are reordered as beams change. The
    returned weights follow the best hypothesis: at each step, the row whose tokens so far are that
    hypothesis' prefix. With the KV cache a step gives one query row; the rows are stacked.
    """
    seen: list[Tensor] = []
    with capture_attention(model, layers=layers, heads=heads, kinds=kinds) as captured:
        results = generate(model, [list(inputs)], config, decode=decode,
                           on_forward=lambda ids: seen.append(ids.detach().clone()))
    best = results[0][0]
    seq2seq = isinstance(model, EncoderDecoder)
    assert config.bos_id is not None or not seq2seq
    sequence = ([config.bos_id] if seq2seq else [int(token) for token in inputs]) + list(best.tokens)
    weights: dict[Site, Tensor] = {}
    for site in captured.sites:
        calls = captured.calls[site]
        if site.stack == "encoder":
            weights[site] = calls[0][0]  # (H, S, S): the encoder runs once, on the one input
            continue
        weights[site] = _follow(calls, seen, sequence, cross=site.kind == "cross")
    rows = min((w.shape[1] for s, w in weights.items() if s.stack != "encoder"), default=len(sequence))
    return DecodedAttention(hypothesis=best, sequence=sequence[:rows], weights=weights)


def _follow(calls: list[Tensor], seen: list[Tensor], sequence: list[int], *, cross: bool) -> Tensor:
    """Stack the query rows of the row that holds ``sequence``'s prefix at each call: ``(H, T, T | S)``."""
    if len(calls) != len(seen):
        raise RuntimeError(f"captured {len(calls)} calls but saw {len(seen)} decoding steps")
    target = torch.tensor(sequence)
    heads, width = calls[0].shape[1], calls[0].shape[-1] if cross else len(sequence)
    full = torch.zeros(heads, len(sequence), width, dtype=calls[0].dtype)  # (H, T, Tk)
    filled = 0
    for ids, call in zip(seen, calls, strict=True):
        length = ids.shape[1]
        if length > len(sequence):
            break
        match = (ids.cpu() == target[:length]).all(dim=1).nonzero()
        if match.numel() == 0:
            break
        rows = call[int(match[0, 0])].cpu()  # (H, Tq, Tk); Tq = 1 with a cache, the whole prefix without
        full[:, length - rows.shape[1]:length, : rows.shape[2]] = rows
        filled = length
    return full[:, :filled, : width if cross else filled]  # (H, T, T | S)


def teacher_forced_attention(
    model: DecoderLM | EncoderDecoder,
    inputs: Sequence[int],
    sequence: Sequence[int],
    *,
    layers: Iterable[int] | None = None,
    heads: Iterable[int] | None = None,
    kinds: Iterable[Kind] = ("self", "cross"),
) -> dict[Site, Tensor]:
    """Attention of one forward pass over a finished output.

    Args:
        inputs: the source token ids (encoder-decoder); ignored for a language model.
        sequence: decoder input tokens ``(T,)``: BOS and the output (encoder-decoder), or prompt and output.

    Returns:
        per site ``(H, T, T)``, ``(H, T, S)`` or ``(H, S, S)``.
    """
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), capture_attention(model, layers=layers, heads=heads, kinds=kinds) as captured:
            target = torch.tensor([list(sequence)], device=next(model.parameters()).device)  # (1, T)
            if isinstance(model, EncoderDecoder):
                model(torch.tensor([list(inputs)], device=target.device), target)
            else:
                model(target)
    finally:
        model.train(training)
    return {site: captured.weights(site)[0].cpu() for site in captured.sites}
