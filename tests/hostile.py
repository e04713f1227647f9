"""Helpers of the hostile-input tests: tiny model directories built in a test's folder, the ``multihead`` CLI run
in-process with its one-line error checked, and snapshots that prove a user's files were left alone."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from multihead.cli import main
from multihead.data import LabelVocab
from multihead.model_dir import save_model_dir
from multihead.models import DecoderLM, Encoder, SequenceClassifier, TransformerConfig
from multihead.tokenizers import Tokenizer

TEXTS = ["a good film", "a bad film", "good good fun", "dull and bad", "the plot is good", "the plot is bad"]


def tokenizer() -> Tokenizer:
    return Tokenizer.train_from_texts(TEXTS, kind="word", vocab_size=40, min_frequency=1)


def classifier_dir(path: Path) -> Path:
    """A two-class ``SequenceClassifier`` model directory (config, weights, tokenizer, labels) at ``path``."""
    torch.manual_seed(0)
    words = tokenizer()
    config = TransformerConfig(vocab_size=words.vocab_size, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_length=32,
                               pad_id=words.pad_id)
    model = SequenceClassifier(config, n_classes=2)
    return save_model_dir(path, model=model, tokenizer=words, labels=LabelVocab(["neg", "pos"]),
                          extra={"task": "classification", "experiment": {"data": {"max_length": 16}}})


def language_model_dir(path: Path, *, positions: str = "rope") -> Path:
    """A tiny ``DecoderLM`` model directory with a character tokenizer at ``path``."""
    torch.manual_seed(0)
    chars = Tokenizer.train_from_texts(TEXTS, kind="char", vocab_size=40, min_frequency=1)
    config = TransformerConfig(vocab_size=chars.vocab_size, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_length=64,
                               pad_id=chars.pad_id, positions=positions)
    return save_model_dir(path, model=DecoderLM(config), tokenizer=chars, extra={"task": "language-model"})


def bert_like_encoder_dir(path: Path) -> Path:
    """A tiny ``Encoder`` that ``convert --to hf`` writes as a BERT folder."""
    torch.manual_seed(0)
    config = TransformerConfig(vocab_size=30, d_model=16, n_heads=2, n_layers=1, d_ff=32, positions="learned",
                               norm_first=False, embedding_norm=True, scale_embeddings=False, activation="gelu",
                               max_length=32, pad_id=0)
    return save_model_dir(path, model=Encoder(config), extra={"task": "sentence-embedding"})


def user_folder(path: Path) -> Path:
    """A folder of a user's own files (a thesis and a sub-folder), as found at a destination by mistake."""
    (path / "chapters").mkdir(parents=True)
    (path / "thesis.txt").write_text("four years of work\n")
    (path / "chapters" / "one.txt").write_text("chapter one\n")
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path) -> sha256 of its bytes; {} when ``root`` is absent."""
    if not root.exists():
        return {}
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(file.relative_to(root)): hashlib.sha256(file.read_bytes()).hexdigest()
            for file in sorted(root.rglob("*")) if file.is_file()}


def fails(capsys: pytest.CaptureFixture[str], argv: list[str], *, says: str | tuple[str, ...] = ()) -> str:
    """Run ``multihead ARGV`` in-process; it must exit 2 with one line ``multihead CMD: error: ...`` on stderr that
    contains every text in ``says``. Returns that line."""
    capsys.readouterr()
    status = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, f"exit {status}, stderr: {err[-2000:]}"
    assert len(lines) == 1, f"expected one line, got {len(lines)}: {err[-2000:]}"
    assert lines[0].startswith(f"multihead {argv[0]}: error: "), lines[0]
    assert "Traceback" not in err
    for text in (says,) if isinstance(says, str) else says:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    return lines[0]


def edit_config(model_dir: Path, **changes: Any) -> None:
    """Set top-level keys of a model directory's ``config.json``."""
    path = model_dir / "config.json"
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))
