"""A tiny ``DecoderLM`` and a tiny ``EncoderDecoder`` learn to reverse sequences, to near-zero loss, in seconds."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from multihead import DecoderLM, EncoderDecoder, TransformerConfig

PAD, BOS, SEP = 0, 1, 2
FIRST_SYMBOL, VOCAB, LENGTH, EXAMPLES = 3, 13, 6, 32


def reverse_task(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``EXAMPLES`` random sequences of ``LENGTH`` symbols and their reversals."""
    generator = torch.Generator().manual_seed(seed)
    source = torch.randint(FIRST_SYMBOL, VOCAB, (EXAMPLES, LENGTH), generator=generator)
    return source, source.flip(1)


def tiny_config(**changes: object) -> TransformerConfig:
    return TransformerConfig.preset(
        "tiny", vocab_size=VOCAB, d_model=64, n_heads=4, n_layers=2, dropout=0.0, max_length=32, **changes
    )


def train(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor], steps: int, lr: float = 3e-3) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    loss = torch.tensor(float("inf"))
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
    return loss.item()


def test_decoder_lm_learns_to_reverse() -> None:
    torch.manual_seed(0)
    source, target = reverse_task()
    sequence = torch.cat([source, torch.full((EXAMPLES, 1), SEP), target], dim=1)  # (N, 2L + 1)
    model = DecoderLM(tiny_config(positions="rope"))

    def loss_fn() -> torch.Tensor:
        logits = model(sequence[:, :-1])  # (N, 2L, V)
        answer = logits[:, LENGTH:]  # predictions of the reversed half
        return F.cross_entropy(answer.reshape(-1, VOCAB), sequence[:, LENGTH + 1 :].reshape(-1))

    assert train(model, loss_fn, steps=250) < 0.02
    model.eval()
    with torch.no_grad():
        predicted = model(sequence[:, :-1])[:, LENGTH:].argmax(-1)
    assert torch.equal(predicted, target)


def test_encoder_decoder_learns_to_reverse() -> None:
    torch.manual_seed(0)
    source, target = reverse_task(seed=1)
    decoder_input = torch.cat([torch.full((EXAMPLES, 1), BOS), target[:, :-1]], dim=1)  # (N, L)
    model = EncoderDecoder(tiny_config(positions="sinusoidal"))

    def loss_fn() -> torch.Tensor:
        logits = model(source, decoder_input)  # (N, L, V)
        return F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1))

    assert train(model, loss_fn, steps=280, lr=1e-3) < 0.02  # sinusoidal, scaled embeddings (the default)
    model.eval()
    with torch.no_grad():  # greedy decoding through the cache reproduces every reversal
        memory = model.encode(source)
        cache = model.make_cache(batch_size=EXAMPLES, source_length=LENGTH, max_length=LENGTH + 1)
        token = torch.full((EXAMPLES, 1), BOS)
        decoded = []
        for _ in range(LENGTH):
            token = model.decode(token, memory, cache=cache)[:, -1:].argmax(-1)
            decoded.append(token)
    assert torch.equal(torch.cat(decoded, dim=1), target)
