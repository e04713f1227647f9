"""Small models for the quantization tests: a random one, and one trained for a few seconds so that its
next-token distributions are confident (greedy agreement after quantization then means something)."""

from __future__ import annotations

import functools

import torch

from multihead import DecoderLM, TransformerConfig

VOCAB = 48  # a multiple of 16: the int4 kernel takes the output layer too


def lm_config(**overrides: object) -> TransformerConfig:
    """Llama-like: RMSNorm, SwiGLU, RoPE, grouped keys; widths that int4 groups of 32 and 64 divide."""
    options: dict[str, object] = {"vocab_size": VOCAB, "d_model": 64, "n_heads": 4, "n_kv_heads": 2, "n_layers": 2,
                                  "d_ff": 128, "dropout": 0.0, "max_length": 96, "positions": "rope", "norm": "rms",
                                  "activation": "swiglu", "bias": False, "tie_embeddings": True, "pad_id": 0}
    options.update(overrides)
    return TransformerConfig(**options)  # type: ignore[arg-type]


def random_lm(*, seed: int = 0, **overrides: object) -> DecoderLM:
    torch.manual_seed(seed)
    model = DecoderLM(lm_config(**overrides))
    for parameter in model.parameters():
        if parameter.dim() >= 2:
            torch.nn.init.normal_(parameter, std=0.1)
    return model.eval()


def sequences(count: int, length: int, *, seed: int) -> torch.Tensor:
    """Arithmetic progressions ``a + b * t (mod VOCAB - 1) + 1``: each row's step ``b`` must be read from context."""
    generator = torch.Generator().manual_seed(seed)
    start = torch.randint(0, VOCAB - 1, (count, 1), generator=generator)
    step = torch.randint(1, 6, (count, 1), generator=generator)
    return (start + step * torch.arange(length)) % (VOCAB - 1) + 1  # (count, length), never the pad id 0


@functools.lru_cache(maxsize=1)
def _trained_state() -> dict[str, torch.Tensor]:
    model = random_lm(seed=1)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for step in range(60):
        batch = sequences(16, 24, seed=step)
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def trained_lm() -> DecoderLM:
    """A fresh copy of the tiny LM trained for 60 steps on :func:`sequences` (trained once per session)."""
    model = random_lm(seed=1)
    model.load_state_dict(_trained_state())
    return model.eval()
