"""Tiny random-init Hugging Face models saved to a folder, and helpers to compare decoded outputs.

The models are built from local configs (no hub). Their initialisers' spread is raised from 0.02 so
that next-token distributions are peaked enough for greedy and beam search to be well defined
(ties between candidates would make the comparison depend on rounding).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor

from multihead.generation import Hypothesis

transformers = pytest.importorskip("transformers", reason="parity tests compare against Hugging Face transformers")


def bert(tmp: Path, *, classify: bool = False, vocab_size: int = 99, **overrides: Any) -> Path:
    """A 2-layer BERT (``BertModel`` or ``BertForSequenceClassification``) saved to ``tmp``."""
    values = {"vocab_size": vocab_size, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
              "intermediate_size": 64, "max_position_embeddings": 40, "initializer_range": 0.3, **overrides}
    config = transformers.BertConfig(**values)
    if classify:
        config.id2label, config.label2id = {0: "neg", 1: "neutral", 2: "pos"}, {"neg": 0, "neutral": 1, "pos": 2}
    torch.manual_seed(0)
    kind = transformers.BertForSequenceClassification if classify else transformers.BertModel
    return _save(kind(config), tmp)


def gpt2(tmp: Path, **overrides: Any) -> Path:
    """A 2-layer GPT-2 language model saved to ``tmp``."""
    values = {"vocab_size": 97, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64, "initializer_range": 0.3,
              "bos_token_id": 96, "eos_token_id": 96, "pad_token_id": 0, **overrides}
    torch.manual_seed(0)
    return _save(transformers.GPT2LMHeadModel(transformers.GPT2Config(**values)), tmp)


MARIAN_PAD = 60


def marian(tmp: Path, **overrides: Any) -> Path:
    """A 2+3-layer Marian translation model saved to ``tmp`` (swish, scaled embeddings, as opus-mt)."""
    values = {"vocab_size": 91, "d_model": 32, "encoder_layers": 2, "decoder_layers": 3, "encoder_attention_heads": 4,
              "decoder_attention_heads": 4, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 64,
              "pad_token_id": MARIAN_PAD, "decoder_start_token_id": MARIAN_PAD, "eos_token_id": 0,
              "forced_eos_token_id": None, "activation_function": "swish", "scale_embedding": True, "init_std": 0.1,
              **overrides}
    torch.manual_seed(0)
    return _save(transformers.MarianMTModel(transformers.MarianConfig(**values)), tmp)


def _save(model: Any, tmp: Path) -> Path:
    model.eval().save_pretrained(tmp)
    return tmp


def hf_model(kind: str, directory: Path) -> Any:
    """A ``transformers`` class (by name) loaded from ``directory``, in eval mode."""
    return getattr(transformers, kind).from_pretrained(directory).eval()


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Prompts left-padded for ``transformers``' decoder-only ``generate``: ids and attention mask ``(B, P)``."""
    longest = max(len(prompt) for prompt in prompts)
    ids = torch.full((len(prompts), longest), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt):] = torch.tensor(prompt)
        mask[row, longest - len(prompt):] = 1
    return ids, mask


def right_padded(sources: Sequence[Sequence[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Sources right-padded for an encoder: ids and attention mask ``(B, S)``."""
    longest = max(len(source) for source in sources)
    ids = torch.full((len(sources), longest), pad_id, dtype=torch.long)
    for row, source in enumerate(sources):
        ids[row, : len(source)] = torch.tensor(source)
    return ids, (ids != pad_id).long()


def until_eos(rows: Tensor, eos_id: int) -> list[list[int]]:
    """Generated rows of ``transformers`` cut after the first ``eos_id`` (the padding after it dropped)."""
    out = []
    for row in rows.tolist():
        out.append(row[: row.index(eos_id) + 1] if eos_id in row else row)
    return out


def ours(results: Sequence[Sequence[Hypothesis]]) -> list[list[int]]:
    """Our hypotheses, flattened in order, as token lists that end with their stop token if any."""
    return [h.tokens + ([h.stop_token] if h.stop_token is not None else []) for hypotheses in results
            for h in hypotheses]


def frequent_token(rows: list[list[int]], *, within: int = 4) -> int:
    """The token generated most often among the first ``within`` tokens of the rows (smallest id on
    ties): as eos it makes outputs end early, at different lengths."""
    counts: dict[int, int] = {}
    for row in rows:
        for token in row[:within]:
            counts[token] = counts.get(token, 0) + 1
    return min(counts, key=lambda token: (-counts[token], token))
