"""Sequence to sequence end to end (translation, abstractive summarisation): read pairs, tokenize, train, save.

Sources are ``tokens + [EOS]``; the decoder reads ``[BOS] + tokens`` and learns to emit ``tokens + [EOS]``.
Decoding and BLEU / ROUGE on a saved model are in :mod:`multihead.tasks.seq2seq_eval`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead.data import BucketBatchSampler, Example, ReadReport, multi30k, pad_batch, read_examples, read_parallel
from multihead.data.errors import DataError
from multihead.data.splits import split_by_fraction
from multihead.errors import ConfigError
from multihead.experiment import ExperimentConfig
from multihead.model_dir import write_model_files
from multihead.models import EncoderDecoder, TransformerConfig
from multihead.models.rnn_seq2seq import RNNEncoderDecoder, RNNSeq2SeqConfig
from multihead.tokenizers import Tokenizer
from multihead.training import TrainData, Trainer

__all__ = ["SEQ2SEQ_ARCHITECTURES", "PairExamples", "Seq2SeqResult", "Seq2SeqTask", "build_seq2seq_model",
           "encode_pairs", "load_pairs", "train_seq2seq"]

Batch = dict[str, Tensor]
IGNORE = -100  # target positions that carry no loss (padding)
SEQ2SEQ_ARCHITECTURES = ("transformer", "rnn-attention")
"""``model.architecture`` values a sequence-to-sequence task trains."""


@dataclass
class PairExamples:
    """Token ids of each side of a split (specials included), ready for batching."""

    sources: list[list[int]]
    targets: list[list[int]]  # [BOS] tokens [EOS]

    def lengths(self) -> list[int]:
        return [len(s) + len(t) for s, t in zip(self.sources, self.targets, strict=True)]

    def collate(self, indices: Sequence[int], *, pad_id: int) -> Batch:
        """``source`` ``(B, S)``, ``target_in`` ``(B, T)`` and ``target_out`` ``(B, T)`` (padding = -100)."""
        source, _ = pad_batch([self.sources[i] for i in indices], pad_id=pad_id)
        target, mask = pad_batch([self.targets[i] for i in indices], pad_id=pad_id)
        target_out = target[:, 1:].masked_fill(~mask[:, 1:], IGNORE)  # (B, T)
        return {"source": source, "target_in": target[:, :-1], "target_out": target_out}

    def batches(self, *, batch_size: int, pad_id: int) -> Iterable[Batch]:
        """Evaluation batches in length order (no shuffling)."""
        sampler = BucketBatchSampler(self.lengths(), batch_size=batch_size, shuffle=False)
        for indices in sampler.batches(0):
            yield self.collate(indices, pad_id=pad_id)


class Seq2SeqTask:
    """Token-level cross-entropy (optionally label-smoothed); validation loss, perplexity and token accuracy."""

    def __init__(self, *, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def count(self, batch: Batch) -> int:
        return int((batch["target_out"] != IGNORE).sum())

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        logits = model(batch["source"], batch["target_in"]).float()  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), batch["target_out"].flatten(), ignore_index=IGNORE,
                               reduction="sum", label_smoothing=self.label_smoothing)

    def evaluate(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        total, correct, count = 0.0, 0, 0
        for batch in batches:
            logits = model(batch["source"], batch["target_in"]).float()  # (B, T, V)
            targets = batch["target_out"]
            total += float(F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                                           reduction="sum"))
            real = targets != IGNORE
            correct += int(((logits.argmax(-1) == targets) & real).sum())
            count += int(real.sum())
        loss = total / max(count, 1)
        return {"loss": loss, "perplexity": float(torch.tensor(loss).exp()), "token_accuracy": correct / max(count, 1)}


@dataclass
class Seq2SeqResult:
    output_dir: Path
    best_validation: float | None
    best_step: int | None
    seconds: float
    skipped_rows: int
    interrupted: bool = False


def load_pairs(config: ExperimentConfig, *, report: ReadReport | None = None) -> dict[str, list[Example]]:
    """``train``, ``validation`` and (when known) ``test`` pairs: ``text`` the source, ``label`` the target."""
    data = config.data
    if data.dataset == "multi30k":
        return multi30k(source=data.source_language, target=data.target_language)
    if data.dataset == "bbc-news-summary":
        from multihead.data.summaries import bbc_news_summary

        return {split: [Example(" ".join(a.sentences), " ".join(a.summary_sentences), a.source) for a in articles]
                for split, articles in bbc_news_summary().items()}
    if data.dataset is not None:
        raise ConfigError(f"data.dataset {data.dataset!r:.80} is not parallel text; for {config.task} use multi30k, "
                          "bbc-news-summary or data.train (+ data.train_target)")
    on_error = "skip" if data.skip_bad_rows else "raise"

    def read(path: str, target_path: str | None) -> list[Example]:
        if target_path:
            pairs = list(read_parallel(path, target_path, encoding=data.encoding, on_error=on_error, report=report))
        else:
            pairs = list(read_examples(path, format=data.format, text_field=data.source_field,
                                       label_field=data.target_field, encoding=data.encoding, on_error=on_error,
                                       report=report))
        if not pairs:
            raise DataError(f"{path}: no sentence pairs found")
        missing = next((pair for pair in pairs if not pair.label), None)
        if missing is not None:
            raise DataError(f"{missing.source}: no target (expected a {data.target_field!r:.80} column or key, "
                            "or data.train_target naming a line-aligned file)")
        return pairs

    assert data.train is not None
    splits = {"train": read(data.train, data.train_target)}
    if data.validation:
        splits["validation"] = read(data.validation, data.validation_target)
    else:
        kept, held_out = split_by_fraction(splits["train"], fractions=[1 - data.validation_fraction,
                                                                       data.validation_fraction],
                                           seed=config.training.seed)
        splits["train"], splits["validation"] = kept, held_out
    if data.test:
        splits["test"] = read(data.test, data.test_target)
    return splits


def summaries_in_article_order(splits: Sequence[str]) -> dict[str, list[Example]]:
    """BBC News pairs of ``splits`` whose targets list the reference sentences in the order of the article.

    The references are sentences of the article "in no particular order" (97% of validation summaries are not in
    article order); the same sentences in article order are one left-to-right walk through the source, which a
    copying decoder learns far sooner. ROUGE-1/2 barely depend on the order; evaluation keeps the given one.
    """
    from multihead.data.summaries import bbc_news_summary

    def ordered(article: Any) -> str:
        position = {sentence: index for index, sentence in reversed(list(enumerate(article.sentences)))}
        keyed = sorted(enumerate(article.summary_sentences),
                       key=lambda item: (position.get(item[1], len(position)), item[0]))  # unmatched keep their place
        return " ".join(sentence for _, sentence in keyed)

    articles = bbc_news_summary()
    return {split: [Example(" ".join(a.sentences), ordered(a), a.source) for a in articles[split]] for split in splits}


def encode_pairs(pairs: Sequence[Example], *, source_tokenizer: Tokenizer, target_tokenizer: Tokenizer,
                 max_source_length: int, max_target_length: int) -> PairExamples:
    """Sources ``tokens[:max - 1] + [EOS]`` and targets ``[BOS] + tokens[:max - 2] + [EOS]``."""
    sources = source_tokenizer.encode_batch([p.text for p in pairs], add_special_tokens=False)
    targets = target_tokenizer.encode_batch([p.label or "" for p in pairs], add_special_tokens=False)
    source_eos, bos, eos = _special(source_tokenizer, "eos"), _special(target_tokenizer, "bos"), \
        _special(target_tokenizer, "eos")
    return PairExamples(sources=[[*s[:max_source_length - 1], source_eos] for s in sources],
                        targets=[[bos, *t[:max_target_length - 2], eos] for t in targets])


def _special(tokenizer: Tokenizer, role: str) -> int:
    token_id = getattr(tokenizer, f"{role}_id")
    if token_id is None:
        raise ConfigError(f"the tokenizer has no {role.upper()} token; sequence-to-sequence tasks need "
                          "[PAD], [BOS] and [EOS] (the default special tokens)")
    return token_id


def build_tokenizers(config: ExperimentConfig, pairs: Sequence[Example]) -> tuple[Tokenizer, Tokenizer]:
    """One tokenizer trained on both sides (``model.shared_vocabulary``, the default), or one per side."""
    settings = config.tokenizer
    if settings.path:
        shared = Tokenizer.load(settings.path)
        return shared, shared

    def train(texts: list[str]) -> Tokenizer:
        return Tokenizer.train_from_texts(texts, kind=settings.kind, vocab_size=settings.vocab_size,
                                          lowercase=settings.lowercase, min_frequency=settings.min_frequency)

    sources, targets = [p.text for p in pairs], [p.label or "" for p in pairs]
    if config.model.get("shared_vocabulary", True):
        shared = train(sources + targets)
        return shared, shared
    return train(sources), train(targets)


def build_seq2seq_model(model_config: TransformerConfig | RNNSeq2SeqConfig) -> EncoderDecoder | RNNEncoderDecoder:
    """An ``EncoderDecoder`` for a ``TransformerConfig``, an ``RNNEncoderDecoder`` for an ``RNNSeq2SeqConfig``."""
    if isinstance(model_config, RNNSeq2SeqConfig):
        return RNNEncoderDecoder(model_config)
    if isinstance(model_config, TransformerConfig):
        return EncoderDecoder(model_config)
    raise ConfigError(f"a {type(model_config).__name__} does not describe a sequence-to-sequence model; "
                      f"model.architecture must be one of {SEQ2SEQ_ARCHITECTURES}")


def train_seq2seq(
    config: ExperimentConfig, *, resume: bool = False, log: Callable[[str], None] = print
) -> Seq2SeqResult:
    """Train an ``EncoderDecoder`` (or, with ``model.architecture: rnn-attention``, an ``RNNEncoderDecoder``) on
    ``train`` pairs, keep the step with the best validation loss in ``best/``."""
    if config.architecture not in SEQ2SEQ_ARCHITECTURES:
        raise ConfigError(f"model.architecture {config.architecture!r:.80} cannot be trained for {config.task}; "
                          f"expected one of {SEQ2SEQ_ARCHITECTURES}")
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    report = ReadReport()
    splits = load_pairs(config, report=report)
    if config.data.dataset == "bbc-news-summary":
        splits.update(summaries_in_article_order(("train", "validation")))
        log("training targets: each reference's sentences in article order (scores use the references as given)")
    if report.skipped:
        log(f"skipped {report.skipped} bad rows; first problems: " + "; ".join(report.problems[:3]))
    log(" ".join(f"{name} {len(pairs):,}" for name, pairs in splits.items()) + " sentence pairs")
    saved = output_dir / "last"
    if resume and (saved / "tokenizer.json").is_file():
        source_tokenizer = Tokenizer.load(saved / "tokenizer.json")
        target_file = saved / "target_tokenizer.json"
        target_tokenizer = Tokenizer.load(target_file) if target_file.is_file() else source_tokenizer
    else:
        source_tokenizer, target_tokenizer = build_tokenizers(config, splits["train"])
    shared = source_tokenizer is target_tokenizer
    pad_id = _special(source_tokenizer, "pad")
    if target_tokenizer.pad_id != pad_id:
        raise ConfigError("the source and target tokenizers must share the padding id")
    encoded = {name: encode_pairs(pairs, source_tokenizer=source_tokenizer, target_tokenizer=target_tokenizer,
                                  max_source_length=config.data.max_length,
                                  max_target_length=config.data.max_target_length)
               for name, pairs in splits.items() if name != "test"}
    torch.manual_seed(config.training.seed)
    model_config = config.model_config(vocab_size=source_tokenizer.vocab_size, pad_id=pad_id)
    if not shared:
        model_config = replace(model_config, target_vocab_size=target_tokenizer.vocab_size)
    model = build_seq2seq_model(model_config)
    log(f"model: {sum(p.numel() for p in model.parameters()):,} parameters; vocabulary "
        + (f"{source_tokenizer.vocab_size:,} shared" if shared
           else f"{source_tokenizer.vocab_size:,} source, {target_tokenizer.vocab_size:,} target"))
    train, batch_size = encoded["train"], config.training.batch_size
    sampler = BucketBatchSampler(train.lengths(), batch_size=batch_size, shuffle=True, seed=config.training.seed,
                                 drop_last=len(train.sources) >= batch_size)
    extra: dict[str, Any] = {"task": config.task, "experiment": config.to_dict()}

    def save_files(directory: Path, trained: nn.Module) -> None:
        write_model_files(directory, model=trained, tokenizer=source_tokenizer, extra=extra)
        if not shared:
            target_tokenizer.save(directory / "target_tokenizer.json")

    trainer = Trainer(
        model=model,
        task=Seq2SeqTask(label_smoothing=config.training.label_smoothing),
        train=TrainData(sampler=sampler, collate=lambda indices: train.collate(indices, pad_id=pad_id)),
        validation=lambda: encoded["validation"].batches(batch_size=2 * batch_size, pad_id=pad_id),
        config=config.training,
        output_dir=output_dir,
        save_files=save_files,
    )
    result = trainer.fit(resume=resume)
    return Seq2SeqResult(output_dir=output_dir, best_validation=result.best_metric, best_step=result.best_step,
                         seconds=time.perf_counter() - started, skipped_rows=report.skipped,
                         interrupted=result.interrupted)
