"""Head studies: a saved model with the data and scoring ``multihead heads`` needs, for each task that has one.

Loading the model and its data is task work; the analysis (importance, pruning curves) stays pure in
:mod:`multihead.inspect.pruning_report`, which receives the :class:`~multihead.inspect.pruning_report.HeadStudy`.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from multihead.errors import CheckpointError, ConfigError
from multihead.inspect.pruning_report import HeadStudy
from multihead.tasks.builtin import saved_fields

__all__ = ["classifier_study", "translation_study"]


def classifier_study(model_dir: Path, *, splits: list[str], data: str | None = None, text_field: str | None = None,
                     label_field: str | None = None, limit: int | None = None, **_: Any) -> HeadStudy:
    """A classifier with ``splits`` of its recorded data set, or ``data`` (a labelled file, read with the model's
    own field names unless given) under the split name ``data``; scored by accuracy."""
    from multihead.data import read_examples
    from multihead.experiment import recorded_split
    from multihead.model_dir import load_model_dir, save_model_dir
    from multihead.tasks.classification import ClassificationTask, encode_split, load_splits

    loaded = load_model_dir(model_dir)
    if loaded.tokenizer is None or loaded.labels is None:
        raise CheckpointError(f"{model_dir}: a classifier directory needs tokenizer.json and labels.json")
    max_length = int(loaded.config.get("experiment", {}).get("data", {}).get("max_length", 512))
    encoded, saved = {}, saved_fields(model_dir)
    for split in splits:
        examples = (list(read_examples(data, text_field=text_field or saved[0], label_field=label_field or saved[1]))
                    if split == "data"
                    else recorded_split(loaded.config, split, load_splits, where=model_dir))
        encoded[split] = encode_split(examples[:limit] if limit else examples, tokenizer=loaded.tokenizer,
                                      labels=loaded.labels, max_length=max_length)
    task, pad_id = ClassificationTask(label_names=loaded.labels.names), loaded.tokenizer.pad_id

    def batches(split: str) -> Iterable[Any]:
        return encoded[split].batches(batch_size=64, pad_id=pad_id)

    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        with torch.no_grad():
            return task.evaluate(model.eval(), batches(split))

    def run(model: nn.Module, split: str) -> int:
        tokens = 0
        with torch.inference_mode():
            for batch in batches(split):
                model(batch["ids"], mask=batch["mask"])
                tokens += int(batch["mask"].sum())
        return tokens  # real (not padding) tokens classified

    def save(model: nn.Module, directory: Path) -> Path:
        extra = {k: v for k, v in loaded.config.items()
                 if k not in ("format", "format_version", "architecture", "architecture_args", "model")}
        return save_model_dir(directory, model=model, tokenizer=loaded.tokenizer, labels=loaded.labels, extra=extra)

    return HeadStudy(model=loaded.model, metric="accuracy", splits=splits, batches=batches, loss=task.loss,
                     evaluate=evaluate, run=run, save=save)


def translation_study(model_dir: Path, *, splits: list[str], data: str | None = None, references: str | None = None,
                      num_beams: int = 1, limit: int | None = None, **_: Any) -> HeadStudy:
    """A translation model with ``splits`` of its recorded data set, or ``data`` (a source file) with
    ``references`` under the split name ``data``; scored by sacreBLEU BLEU."""
    from multihead.data import read_parallel
    from multihead.experiment import recorded_split
    from multihead.generation import generate
    from multihead.model_dir import save_model_dir
    from multihead.tasks.seq2seq import Seq2SeqTask, encode_pairs, load_pairs
    from multihead.tasks.seq2seq_eval import load_seq2seq
    from multihead.text_metrics import bleu, chrf

    loaded = load_seq2seq(model_dir)
    pairs = {}
    for split in splits:
        if split == "data":
            if references is None:
                raise ConfigError("a translation model is scored on DATA against --references FILE (line-aligned)")
            chosen = list(read_parallel(str(data), references))
        else:
            chosen = recorded_split(loaded.config, split, load_pairs, where=model_dir)
        pairs[split] = chosen[:limit] if limit else chosen
    encoded = {split: encode_pairs(chosen, source_tokenizer=loaded.source_tokenizer,
                                   target_tokenizer=loaded.target_tokenizer,
                                   max_source_length=loaded.max_source_length,
                                   max_target_length=loaded.max_target_length) for split, chosen in pairs.items()}
    generation = loaded.generation_config(num_beams=num_beams)
    pad_id = loaded.target_tokenizer.pad_id
    assert pad_id is not None

    def translate(model: nn.Module, split: str) -> list[str]:
        return dataclasses.replace(loaded, model=model)([p.text for p in pairs[split]], generation=generation)

    def evaluate(model: nn.Module, split: str) -> dict[str, float]:
        hypotheses, references_ = translate(model, split), [p.label or "" for p in pairs[split]]
        return {"bleu": bleu(hypotheses, references_).score, "chrf": chrf(hypotheses, references_).score}

    def run(model: nn.Module, split: str) -> int:
        with torch.inference_mode():
            results = generate(model, loaded.encode_sources([p.text for p in pairs[split]]), generation)
        return sum(len(best.tokens) + int(best.finished) for best, *_ in results)  # tokens generated, EOS included

    def save(model: nn.Module, directory: Path) -> Path:
        extra = {k: v for k, v in loaded.config.items()
                 if k not in ("format", "format_version", "architecture", "architecture_args", "model")}
        written = save_model_dir(directory, model=model, tokenizer=loaded.source_tokenizer, extra=extra)
        if (model_dir / "target_tokenizer.json").is_file():
            shutil.copyfile(model_dir / "target_tokenizer.json", written / "target_tokenizer.json")
        return written

    return HeadStudy(model=loaded.model, metric="bleu", splits=splits,
                     batches=lambda split: encoded[split].batches(batch_size=32, pad_id=pad_id),
                     loss=Seq2SeqTask().loss, evaluate=evaluate, run=run, save=save)
