"""Causal language modelling end to end: read text, tokenize it as one stream, train a ``DecoderLM``, save.

Training batches are windows of ``model.max_length + 1`` tokens at random offsets (as nanoGPT samples them);
validation covers the whole validation stream in consecutive windows, so its loss is exact, not sampled.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead.data import tinyshakespeare
from multihead.data.text_file import read_text_file
from multihead.errors import ConfigError
from multihead.experiment import ExperimentConfig
from multihead.model_dir import write_model_files
from multihead.models import DecoderLM, TransformerConfig
from multihead.models.rnn_lm import LSTMLanguageModel, LSTMLMConfig
from multihead.tokenizers import Tokenizer
from multihead.training import TrainData, Trainer

__all__ = ["LM_ARCHITECTURES", "LanguageModelResult", "LanguageModelTask", "RandomWindows", "TokenStream",
           "build_language_model", "load_texts", "read_text", "train_language_model"]

Batch = dict[str, Tensor]
_CHUNK = 1 << 20  # characters read and encoded at a time
LM_ARCHITECTURES = ("transformer", "lstm-lm")
"""``model.architecture`` values the language-model task trains."""


@dataclass
class TokenStream:
    """One split as a single stream of token ids ``(N,)`` and the number of characters it came from."""

    ids: Tensor
    characters: int

    def window(self, offset: int, length: int) -> Tensor:
        return self.ids[offset:offset + length + 1]  # (length + 1,)

    def collate(self, offsets: Sequence[int], *, length: int) -> Batch:
        """``ids`` ``(B, L)`` and next-token ``targets`` ``(B, L)`` from windows starting at ``offsets``."""
        windows = torch.stack([self.window(offset, length) for offset in offsets])  # (B, L + 1)
        return {"ids": windows[:, :-1], "targets": windows[:, 1:]}

    def batches(self, *, length: int, batch_size: int) -> Iterable[Batch]:
        """Consecutive non-overlapping windows covering the stream (each token predicted once)."""
        offsets = list(range(0, len(self.ids) - 1, length))
        for start in range(0, len(offsets), batch_size):
            chunk = offsets[start:start + batch_size]
            full = [o for o in chunk if o + length + 1 <= len(self.ids)]
            if full:
                yield self.collate(full, length=length)
            for offset in chunk[len(full):]:  # the last, shorter window
                yield self.collate([offset], length=len(self.ids) - 1 - offset)


class RandomWindows:
    """Batches of random window offsets, ``steps_per_epoch`` of them per epoch, from a seeded generator."""

    def __init__(self, n_tokens: int, *, length: int, batch_size: int, steps_per_epoch: int, seed: int) -> None:
        if n_tokens <= length + 1:
            raise ConfigError(f"the training text has {n_tokens} tokens, fewer than a window of {length + 1}; "
                              "lower model.max_length or give more text")
        self.n_offsets = n_tokens - length - 1
        self.batch_size, self.steps, self.seed = batch_size, steps_per_epoch, seed

    def batches(self, epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + epoch)
        offsets = torch.randint(self.n_offsets + 1, (self.steps, self.batch_size), generator=generator)
        return offsets.tolist()


class LanguageModelTask:
    """Next-token cross-entropy; validation loss (nats per token), perplexity and bits per character."""

    def __init__(self, *, characters_per_token: float = 1.0, label_smoothing: float = 0.0) -> None:
        self.characters_per_token, self.label_smoothing = characters_per_token, label_smoothing

    def count(self, batch: Batch) -> int:
        return int(batch["targets"].numel())

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        logits = model(batch["ids"]).float()  # (B, L, V)
        return F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), reduction="sum",
                               label_smoothing=self.label_smoothing)

    def evaluate(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        total, count = 0.0, 0
        for batch in batches:
            logits = model(batch["ids"]).float()  # (B, L, V)
            total += float(F.cross_entropy(logits.flatten(0, 1), batch["targets"].flatten(), reduction="sum"))
            count += batch["targets"].numel()
        loss = total / max(count, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)),
                "bits_per_character": loss / math.log(2) / self.characters_per_token}


@dataclass
class LanguageModelResult:
    output_dir: Path
    best_validation: float | None
    best_step: int | None
    validation: dict[str, float] | None
    seconds: float
    interrupted: bool = False


def load_texts(config: ExperimentConfig) -> dict[str, str]:
    """``train`` and ``validation`` text: tinyshakespeare's 90/10 split, or files (validation: the last
    ``data.validation_fraction`` of the training text when no validation file is given)."""
    data = config.data
    if data.dataset == "tinyshakespeare":
        return tinyshakespeare()
    if data.dataset is not None:
        raise ConfigError(f"data.dataset {data.dataset!r:.80} is not plain text; for language-model use "
                          "tinyshakespeare or data.train (a text file)")
    assert data.train is not None
    texts = {"train": read_text(data.train, data.encoding)}
    if data.validation:
        texts["validation"] = read_text(data.validation, data.encoding)
    else:
        cut = int(len(texts["train"]) * (1 - data.validation_fraction))
        texts["train"], texts["validation"] = texts["train"][:cut], texts["train"][cut:]
    return texts


def read_text(path: str, encoding: str = "utf-8") -> str:
    """A whole regular text file (not a FIFO or a device), at most :data:`multihead.limits.MAX_TEXT_BYTES`;
    errors name the file (and the line of a byte that is not valid ``encoding``)."""
    return read_text_file(path, encoding=encoding)


def encode_stream(tokenizer: Tokenizer, text: str) -> TokenStream:
    """The whole text as one id stream, encoded in chunks cut at line ends (so no token spans a cut)."""
    pieces, start = [], 0
    while start < len(text):
        end = text.find("\n", start + _CHUNK)
        end = len(text) if end < 0 else end + 1
        pieces.append(text[start:end])
        start = end
    ids = [token for piece in tokenizer.encode_batch(pieces, add_special_tokens=False) for token in piece]
    return TokenStream(ids=torch.tensor(ids, dtype=torch.long), characters=len(text))


def build_language_model(model_config: TransformerConfig | LSTMLMConfig) -> DecoderLM | LSTMLanguageModel:
    """A ``DecoderLM`` for a ``TransformerConfig``, an ``LSTMLanguageModel`` for an ``LSTMLMConfig``."""
    if isinstance(model_config, LSTMLMConfig):
        return LSTMLanguageModel(model_config)
    if isinstance(model_config, TransformerConfig):
        return DecoderLM(model_config)
    raise ConfigError(f"a {type(model_config).__name__} does not describe a language model; "
                      f"model.architecture must be one of {LM_ARCHITECTURES}")


def train_language_model(
    config: ExperimentConfig, *, resume: bool = False, log: Callable[[str], None] = print
) -> LanguageModelResult:
    """Train a ``DecoderLM`` (or, with ``model.architecture: lstm-lm``, an ``LSTMLanguageModel``) on windows of
    ``model.max_length`` tokens; keep the best validation loss in ``best/``."""
    if config.architecture not in LM_ARCHITECTURES:
        raise ConfigError(f"model.architecture {config.architecture!r:.80} cannot be trained for {config.task}; "
                          f"expected one of {LM_ARCHITECTURES}")
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    texts = load_texts(config)
    log(" ".join(f"{name} {len(text):,} characters" for name, text in texts.items()))
    settings = config.tokenizer
    if resume and (output_dir / "last" / "tokenizer.json").is_file():
        tokenizer = Tokenizer.load(output_dir / "last" / "tokenizer.json")
    elif settings.path:
        tokenizer = Tokenizer.load(settings.path)
    else:
        tokenizer = Tokenizer.train_from_texts([texts["train"]], kind=settings.kind, vocab_size=settings.vocab_size,
                                               lowercase=settings.lowercase, min_frequency=settings.min_frequency)
    streams = {name: encode_stream(tokenizer, text) for name, text in texts.items()}
    torch.manual_seed(config.training.seed)
    model = build_language_model(config.model_config(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id))
    length, batch_size = model.config.max_length, config.training.batch_size
    train = streams["train"]
    log(f"model: {sum(p.numel() for p in model.parameters()):,} parameters; {tokenizer.vocab_size:,} tokens; "
        f"{len(train.ids):,} training tokens; context {length}")
    sampler = RandomWindows(len(train.ids), length=length, batch_size=batch_size,
                            steps_per_epoch=max(1, len(train.ids) // (length * batch_size)), seed=config.training.seed)
    validation = streams["validation"]
    task = LanguageModelTask(characters_per_token=validation.characters / max(len(validation.ids), 1),
                             label_smoothing=config.training.label_smoothing)
    extra: dict[str, Any] = {"task": config.task, "experiment": config.to_dict()}

    def save_files(directory: Path, trained: nn.Module) -> None:
        write_model_files(directory, model=trained, tokenizer=tokenizer, extra=extra)

    trainer = Trainer(
        model=model,
        task=task,
        train=TrainData(sampler=sampler, collate=lambda offsets: train.collate(offsets, length=length)),
        validation=lambda: validation.batches(length=length, batch_size=4 * batch_size),
        config=config.training,
        output_dir=output_dir,
        save_files=save_files,
    )
    result = trainer.fit(resume=resume)
    best = next((e for e in result.evaluations if e["step"] == result.best_step), None)
    return LanguageModelResult(output_dir=output_dir, best_validation=result.best_metric,
                               best_step=result.best_step, validation=best, seconds=time.perf_counter() - started,
                               interrupted=result.interrupted)
