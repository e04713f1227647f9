"""Tiny model directories (a classifier, a language model, a translator) with word tokenizers, for the export
tests. Weights are drawn wide (std 0.5) so that outputs are peaked: greedy and beam choices are far from ties,
and the token sequences vary rather than repeat one token."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

SENTENCES = ["a dog runs on the beach", "two men sit on a bench", "the cat sleeps in the sun",
             "a girl reads a book", "people walk in the park", "a man rides a red bike"]


def needs_onnx() -> None:
    """Skip the calling module unless the ONNX stack of the test extra is installed."""
    for package in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(package, reason=f"ONNX export tests need {package}: pip install -e '.[test]'")


def word_tokenizer():  # type: ignore[no-untyped-def]
    from multihead.tokenizers import Tokenizer

    return Tokenizer.train_from_texts(SENTENCES, kind="word", vocab_size=64, min_frequency=1)


def widen(model: nn.Module, *, seed: int, std: float = 0.5) -> nn.Module:
    """Redraw every parameter from ``normal(0, std)`` (seeded); returns the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return model.eval()


def classifier_dir(path: Path) -> Path:
    from multihead.data import LabelVocab
    from multihead.model_dir import save_model_dir
    from multihead.models import SequenceClassifier, TransformerConfig

    tokenizer = word_tokenizer()
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                               max_length=32, dropout=0.0, positions="learned", pad_id=tokenizer.pad_id)
    model = widen(SequenceClassifier(config, n_classes=3, pooling="mean"), seed=1)
    return save_model_dir(path, model=model, tokenizer=tokenizer, labels=LabelVocab(["animals", "people", "things"]),
                          extra={"task": "classification"})


def language_model_dir(path: Path) -> Path:
    from multihead.model_dir import save_model_dir
    from multihead.models import DecoderLM, TransformerConfig

    tokenizer = word_tokenizer()
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_heads=4, n_kv_heads=2, n_layers=2,
                               d_ff=32, max_length=64, dropout=0.0, positions="rope", norm="rms",
                               activation="swiglu", bias=False, tie_embeddings=False, pad_id=tokenizer.pad_id)
    model = widen(DecoderLM(config), seed=2)
    return save_model_dir(path, model=model, tokenizer=tokenizer, extra={"task": "language-model"})


def translator_dir(path: Path) -> Path:
    from multihead.model_dir import save_model_dir
    from multihead.models import EncoderDecoder, TransformerConfig

    tokenizer = word_tokenizer()
    # Marian's layout (post-norm, sinusoids in halves, output bias), so that the benchmark can convert it too
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=16, n_heads=2, n_layers=1,
                               n_decoder_layers=2, d_ff=32, max_length=64, dropout=0.0, positions="sinusoidal",
                               sinusoid_layout="halves", norm_first=False, output_bias=True, pad_id=tokenizer.pad_id)
    model = widen(EncoderDecoder(config), seed=4, std=1.0)
    return save_model_dir(path, model=model, tokenizer=tokenizer, extra={"task": "translation"})
