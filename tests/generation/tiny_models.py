"""Tiny random models for the generation tests, and references computed by plain full forwards.

The models are fp32 with weights drawn wider than the library's 0.02 init, so that next-token
distributions are neither uniform nor peaked: beams then really differ from greedy decoding.
"""

from __future__ import annotations

import torch
from torch import nn

from multihead import DecoderLM, EncoderDecoder, TransformerConfig

VOCAB = 16
BOS, EOS = 1, 2


def tiny_config(**overrides: object) -> TransformerConfig:
    options: dict[str, object] = {"vocab_size": VOCAB, "d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64,
                                  "dropout": 0.0, "max_length": 64, "positions": "rope", "pad_id": 0,
                                  "tie_embeddings": False}
    options.update(overrides)
    return TransformerConfig(**options)  # type: ignore[arg-type]


def _widen(model: nn.Module, std: float) -> None:
    """Redraw every matrix and embedding with ``std`` (biases and norms stay as they are)."""
    for parameter in model.parameters():
        if parameter.dim() >= 2:
            nn.init.normal_(parameter, mean=0.0, std=std)


def tiny_lm(*, seed: int = 0, std: float = 0.2, **overrides: object) -> DecoderLM:
    torch.manual_seed(seed)
    model = DecoderLM(tiny_config(**overrides))
    _widen(model, std)
    return model.eval()


def tiny_seq2seq(*, seed: int = 0, std: float = 0.2, **overrides: object) -> EncoderDecoder:
    """Learned positions by default: with them these tiny random models depend most on their source."""
    torch.manual_seed(seed)
    model = EncoderDecoder(tiny_config(**{"positions": "learned", **overrides}))
    _widen(model, std)
    return model.eval()


def sequence_log_prob(model: DecoderLM | EncoderDecoder, source: list[int], tokens: list[int]) -> float:
    """The model's log-probability of ``tokens`` after the prompt (or given the source, after BOS), by one
    uncached teacher-forced forward, summed in float64."""
    with torch.no_grad():
        if isinstance(model, EncoderDecoder):
            target_in = torch.tensor([[BOS, *tokens[:-1]]])  # (1, T)
            logits = model(torch.tensor([source]), target_in)[0]  # (T, V)
        else:
            ids = torch.tensor([[*source, *tokens]])  # (1, P + T)
            logits = model(ids[:, :-1])[0, len(source) - 1 :]  # (T, V)
        log_probs = logits.double().log_softmax(dim=-1)
        return float(log_probs.gather(1, torch.tensor(tokens)[:, None]).sum())


def next_token_logits(model: DecoderLM | EncoderDecoder, source: list[int], tokens: list[int]) -> torch.Tensor:
    """Logits ``(V,)`` of the token after ``tokens``, by an uncached full forward."""
    with torch.no_grad():
        if isinstance(model, EncoderDecoder):
            return model(torch.tensor([source]), torch.tensor([[BOS, *tokens]]))[0, -1]
        return model(torch.tensor([[*source, *tokens]]))[0, -1]


def reference_greedy(model: DecoderLM | EncoderDecoder, source: list[int], steps: int, eos: int | None = None
                     ) -> list[int]:
    """Greedy decoding written plainly: an uncached forward over the whole prefix at every step."""
    tokens: list[int] = []
    for _ in range(steps):
        token = int(next_token_logits(model, source, tokens).argmax())
        if token == eos:
            break
        tokens.append(token)
    return tokens


def scored_tokens(tokens: list[int], stop_token: int | None) -> list[int]:
    """The tokens a hypothesis' ``log_prob`` covers: its tokens and the stop token that ended it."""
    return [*tokens, stop_token] if stop_token is not None else list(tokens)
