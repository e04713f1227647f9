"""Text classification end to end: read, tokenize, train, test once, save; and predict / evaluate later.

The Python API here is what ``multihead train``, ``eval`` and ``predict`` call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead.atomic import write_json_atomic
from multihead.data import (
    BucketBatchSampler,
    Example,
    LabelVocab,
    ReadReport,
    bbc_news_topics,
    pad_batch,
    read_examples,
    sentence_polarity,
    stratified_split,
)
from multihead.data.errors import DataError
from multihead.errors import CheckpointError, ConfigError
from multihead.experiment import MODEL_EXTRAS, ExperimentConfig
from multihead.metrics import classification_report
from multihead.model_dir import load_model_dir, write_model_files
from multihead.models import SequenceClassifier
from multihead.models.rnn_classifier import BiLSTMClassifier
from multihead.models.textcnn import TextCNN
from multihead.tokenizers import DEFAULT_SPECIAL_TOKENS, Tokenizer
from multihead.training import TrainData, Trainer

__all__ = [
    "CLASSIFIERS",
    "ClassificationResult",
    "ClassificationTask",
    "EncodedExamples",
    "Prediction",
    "build_classifier",
    "evaluate_classifier",
    "evaluate_classifier_split",
    "load_splits",
    "predict",
    "train_classifier",
]

Batch = dict[str, Tensor]
MASK_TOKEN = "[MASK]"  # added to the tokenizer when the encoder is self-pretrained


@dataclass
class EncodedExamples:
    """Token ids and label ids of a split, ready for batching."""

    ids: list[list[int]]
    labels: list[int]

    def collate(self, indices: Sequence[int], *, pad_id: int, word_dropout: float = 0.0) -> Batch:
        """Pad the chosen examples; ``word_dropout`` deletes that share of inner tokens (training only)."""
        sequences = [self.ids[i] for i in indices]
        if word_dropout > 0.0:
            sequences = [drop_inner_tokens(x, word_dropout) for x in sequences]
        ids, mask = pad_batch(sequences, pad_id=pad_id)
        return {"ids": ids, "mask": mask, "labels": torch.tensor([self.labels[i] for i in indices])}

    def batches(self, *, batch_size: int, pad_id: int) -> Iterable[Batch]:
        """Evaluation batches in length order (no shuffling)."""
        sampler = BucketBatchSampler([len(x) for x in self.ids], batch_size=batch_size, shuffle=False)
        for indices in sampler.batches(0):
            yield self.collate(indices, pad_id=pad_id)


def drop_inner_tokens(ids: list[int], rate: float) -> list[int]:
    """Delete each token but the first and last (the special tokens) with probability ``rate``.

    Word dropout (Iyyer et al., 2015) as augmentation; it draws from torch's global generator, so seeded
    runs repeat and a resumed run continues the same stream. At least one inner token always survives.
    """
    if len(ids) <= 3:
        return ids
    inner = ids[1:-1]
    keep = torch.rand(len(inner)) >= rate  # (T - 2,)
    if not bool(keep.any()):
        keep[int(torch.randint(len(inner), ()))] = True
    return [ids[0], *(token for token, kept in zip(inner, keep.tolist(), strict=False) if kept), ids[-1]]


class ClassificationTask:
    """Cross-entropy (optionally label-smoothed) over examples; accuracy, macro-F1 and loss to evaluate."""

    def __init__(self, *, label_names: Sequence[str], label_smoothing: float = 0.0) -> None:
        self.label_names, self.label_smoothing = list(label_names), label_smoothing

    def count(self, batch: Batch) -> int:
        return int(batch["labels"].numel())

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        logits = model(batch["ids"], mask=batch["mask"]).float()
        return F.cross_entropy(logits, batch["labels"], reduction="sum", label_smoothing=self.label_smoothing)

    def predict(self, model: nn.Module, batches: Iterable[Batch]) -> tuple[Tensor, Tensor, float]:
        """Probabilities ``(N, C)``, targets ``(N,)`` and the mean unsmoothed loss."""
        probabilities, targets, loss, count = [], [], 0.0, 0
        for batch in batches:
            logits = model(batch["ids"], mask=batch["mask"]).float()
            loss += float(F.cross_entropy(logits, batch["labels"], reduction="sum"))
            count += batch["labels"].numel()
            probabilities.append(logits.softmax(-1).cpu())
            targets.append(batch["labels"].cpu())
        return torch.cat(probabilities), torch.cat(targets), loss / max(count, 1)

    def evaluate(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        probabilities, targets, loss = self.predict(model, batches)
        report = classification_report(probabilities.argmax(-1), targets, self.label_names)
        return {"accuracy": float(report["accuracy"]), "macro_f1": float(report["macro_f1"]), "loss": loss}


@dataclass
class ClassificationResult:
    output_dir: Path
    best_validation: float | None
    best_step: int | None
    test_report: dict[str, Any] | None
    seconds: float
    skipped_rows: int
    interrupted: bool = False
    notes: tuple[str, ...] = ()


def load_splits(config: ExperimentConfig, *, report: ReadReport | None = None) -> dict[str, list[Example]]:
    """``train``, ``validation`` and (when known) ``test`` examples for the config's data section."""
    data = config.data
    if data.dataset == "sentence-polarity":
        return sentence_polarity()
    if data.dataset == "bbc-news-topics":
        return bbc_news_topics()
    on_error = "skip" if data.skip_bad_rows else "raise"

    def read(path: str) -> list[Example]:
        examples = list(read_examples(path, format=data.format, text_field=data.text_field,
                                      label_field=data.label_field, encoding=data.encoding, on_error=on_error,
                                      report=report))
        if not examples:
            raise DataError(f"{path}: no examples found")
        missing = next((e for e in examples if e.label is None), None)
        if missing is not None:
            raise DataError(f"{missing.source}: no label (expected a {data.label_field!r:.80} column or key)")
        return examples

    assert data.train is not None
    splits = {"train": read(data.train)}
    if data.validation:
        splits["validation"] = read(data.validation)
    else:
        train = splits["train"]
        kept, held_out = stratified_split(train, labels=[e.label or "" for e in train],
                                          fractions=[1 - data.validation_fraction, data.validation_fraction],
                                          seed=config.training.seed if data.split_seed is None else data.split_seed)
        splits["train"], splits["validation"] = kept, held_out
    if data.test:
        splits["test"] = read(data.test)
    return splits


def encode_split(examples: Sequence[Example], *, tokenizer: Tokenizer, labels: LabelVocab, max_length: int
                 ) -> EncodedExamples:
    ids = tokenizer.encode_batch([e.text for e in examples], max_length=max_length)
    return EncodedExamples(ids=ids, labels=[labels.encode(e.label or "", source=e.source) for e in examples])


def build_tokenizer(config: ExperimentConfig, train_texts: Sequence[str]) -> Tokenizer:
    settings = config.tokenizer
    if settings.path:
        return Tokenizer.load(settings.path)
    if config.model.get("init_from"):  # the pretrained model's own tokenizer
        from multihead.interop import resolve_model_path

        return Tokenizer.load(resolve_model_path(config.model["init_from"]))
    specials = (*DEFAULT_SPECIAL_TOKENS, MASK_TOKEN) if config.pretraining.steps else DEFAULT_SPECIAL_TOKENS
    return Tokenizer.train_from_texts(train_texts, kind=settings.kind, vocab_size=settings.vocab_size,
                                      lowercase=settings.lowercase, min_frequency=settings.min_frequency,
                                      special_tokens=specials)


def self_pretrain(config: ExperimentConfig, tokenizer: Tokenizer, sequences: Sequence[Sequence[int]], *,
                  resume: bool, log: Callable[[str], None]) -> dict[str, Tensor]:
    """Encoder weights from masked-token prediction on the training texts (``config.pretraining``)."""
    from multihead.tasks.pretraining import pretrain_encoder

    mask_id = tokenizer.token_to_id(MASK_TOKEN)
    if mask_id is None:
        raise ConfigError(f"pretraining needs a {MASK_TOKEN} token; the tokenizer "
                          f"{config.tokenizer.path or ''} has none (train one with pretraining.steps set)")
    protected = [i for i in (tokenizer.pad_id, tokenizer.cls_id, tokenizer.sep_id, tokenizer.bos_id,
                             tokenizer.eos_id) if i is not None]
    return pretrain_encoder(config.model_config(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id),
                            sequences, settings=config.pretraining, mask_id=mask_id, protected=protected,
                            output_dir=Path(config.output_dir) / "pretraining", seed=config.training.seed,
                            precision=config.training.precision, progress=config.training.progress,
                            resume=resume, log=log)


CLASSIFIERS: dict[str, type[nn.Module]] = {"transformer": SequenceClassifier, "textcnn": TextCNN,
                                           "bilstm": BiLSTMClassifier}
"""``model.architecture`` -> classifier class; each takes ``(config, n_classes=, [pooling=])``."""


def build_classifier(config: ExperimentConfig, *, vocab_size: int, pad_id: int | None, n_classes: int
                     ) -> nn.Module:
    """The classifier ``config.model`` describes (Transformer, TextCNN or BiLSTM), freshly initialised."""
    architecture = config.architecture
    if architecture not in CLASSIFIERS:
        raise ConfigError(f"task classification: model.architecture must be one of {sorted(CLASSIFIERS)}, "
                          f"got {architecture!r:.80}")
    if architecture != "transformer" and (config.pretraining.steps or config.model.get("init_from")):
        raise ConfigError(f"pretraining.steps and model.init_from need a Transformer, not {architecture!r:.80}")
    model_config = config.model_config(vocab_size=vocab_size, pad_id=pad_id)
    if architecture == "transformer":
        return SequenceClassifier(model_config, n_classes=n_classes, pooling=config.model.get("pooling", "mean"))
    if architecture == "textcnn":
        if "pooling" in config.model:
            raise ConfigError("model.pooling does not apply to textcnn (it always pools max over time); remove it")
        return TextCNN(model_config, n_classes=n_classes)
    return BiLSTMClassifier(model_config, n_classes=n_classes, pooling=config.model.get("pooling", "max"))


def train_classifier(
    config: ExperimentConfig, *, resume: bool = False, log: Callable[[str], None] = print, report_test: bool = True
) -> ClassificationResult:
    """Train on ``train``, pick the best step on ``validation``, report ``test`` once, save ``best/``.

    ``model.ensemble`` > 1 is :func:`multihead.tasks.ensemble.train_ensemble`'s (that many classifiers, seeds
    ``seed``, ``seed + 1``, ..., and their ensemble). ``report_test=False`` leaves the test split alone (an
    ensemble's members)."""
    if config.model.get("ensemble", 1) > 1:
        raise ConfigError("model.ensemble > 1 trains several classifiers: use multihead.tasks.ensemble."
                          "train_ensemble (multihead train picks it through the task registry)")
    started = time.perf_counter()
    output_dir = Path(config.output_dir)
    report = ReadReport()
    splits = load_splits(config, report=report)
    if report.skipped:
        log(f"skipped {report.skipped} bad rows; first problems: " + "; ".join(report.problems[:3]))
    log(" ".join(f"{name} {len(examples):,}" for name, examples in splits.items()) + " examples")
    if resume and (output_dir / "last" / "tokenizer.json").is_file():
        tokenizer = Tokenizer.load(output_dir / "last" / "tokenizer.json")
    else:
        tokenizer = build_tokenizer(config, [e.text for e in splits["train"]])
    if tokenizer.pad_id is None:
        raise ConfigError("the tokenizer has no padding token ([PAD] or <pad>)")
    labels = LabelVocab.from_labels(e.label or "" for e in splits["train"])
    encoded = {name: encode_split(examples, tokenizer=tokenizer, labels=labels, max_length=config.data.max_length)
               for name, examples in splits.items()}
    torch.manual_seed(config.training.seed)
    if config.model.get("init_from"):  # pretrained encoder, new classification layer
        from multihead.interop import classifier_from_pretrained

        if config.pretraining.steps:
            raise ConfigError("model.init_from and pretraining.steps exclude each other; set one of them")
        model = classifier_from_pretrained(
            config.model["init_from"], n_classes=len(labels), pooling=config.model.get("pooling", "mean"),
            overrides={key: value for key, value in config.model.items() if key not in MODEL_EXTRAS})
    else:
        model = build_classifier(config, vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id,
                                 n_classes=len(labels))
    log(f"model: {sum(p.numel() for p in model.parameters()):,} parameters; labels: {', '.join(labels.names)}")
    pad_id, batch_size = tokenizer.pad_id, config.training.batch_size
    train = encoded["train"]
    if config.pretraining.steps:
        model.encoder.load_state_dict(self_pretrain(config, tokenizer, train.ids, resume=resume, log=log))
    sampler = BucketBatchSampler([len(x) for x in train.ids], batch_size=batch_size, shuffle=True,
                                 seed=config.training.seed, drop_last=len(train.ids) >= batch_size)
    extra = {"task": "classification", "experiment": config.to_dict()}

    def save_files(directory: Path, trained: nn.Module) -> None:
        write_model_files(directory, model=trained, tokenizer=tokenizer, labels=labels, extra=extra)

    trainer = Trainer(
        model=model,
        task=ClassificationTask(label_names=labels.names, label_smoothing=config.training.label_smoothing),
        train=TrainData(sampler=sampler, collate=lambda indices: train.collate(
            indices, pad_id=pad_id, word_dropout=config.data.word_dropout)),
        validation=lambda: encoded["validation"].batches(batch_size=2 * batch_size, pad_id=pad_id),
        config=config.training,
        output_dir=output_dir,
        save_files=save_files,
    )
    result = trainer.fit(resume=resume)
    test_report = None
    if "test" in encoded and report_test and not result.interrupted:
        test_report = evaluate_encoded(output_dir / "best", encoded["test"], batch_size=2 * batch_size)
        write_json_atomic(output_dir / "test_metrics.json", test_report)
    return ClassificationResult(output_dir=output_dir, best_validation=result.best_metric,
                                best_step=result.best_step, test_report=test_report,
                                seconds=time.perf_counter() - started, skipped_rows=report.skipped,
                                interrupted=result.interrupted)


def evaluate_encoded(model_dir: Path, examples: EncodedExamples, *, batch_size: int = 64,
                     with_predictions: bool = False) -> dict[str, Any]:
    """The classification report of ``model_dir`` on ``examples``; ``with_predictions`` adds the predicted and
    true class ids, example by example (``predictions``, ``targets``)."""
    loaded = load_model_dir(model_dir)
    task = ClassificationTask(label_names=loaded.labels.names)
    with torch.no_grad():
        probabilities, targets, loss = task.predict(
            loaded.model, examples.batches(batch_size=batch_size, pad_id=loaded.tokenizer.pad_id))
    report = classification_report(probabilities.argmax(-1), targets, loaded.labels.names)
    if with_predictions:
        report.update(predictions=probabilities.argmax(-1).tolist(), targets=targets.tolist())
    return {**report, "loss": loss, "examples": len(examples.ids)}


def evaluate_classifier(model_dir: str | Path, data: str | Path, *, text_field: str = "text",
                        label_field: str = "label", max_length: int | None = None, with_predictions: bool = False
                        ) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class scores and confusion matrix of a saved model on a labelled file;
    ``with_predictions`` as in :func:`evaluate_encoded`."""
    loaded = load_model_dir(model_dir)
    examples = [e for e in read_examples(data, text_field=text_field, label_field=label_field)]
    length = max_length or _saved_max_length(loaded.config)
    encoded = encode_split(examples, tokenizer=loaded.tokenizer, labels=loaded.labels, max_length=length)
    return evaluate_encoded(Path(model_dir), encoded, with_predictions=with_predictions)


def evaluate_classifier_split(model_dir: str | Path, split: str = "test", *, with_predictions: bool = False
                              ) -> dict[str, Any]:
    """The same report on a split of the data set the model's experiment recorded (e.g. after training with
    ``report_test=False``); ``with_predictions`` as in :func:`evaluate_encoded`."""
    from multihead.experiment import recorded_split

    loaded = load_model_dir(model_dir)
    examples = recorded_split(loaded.config, split, load_splits, where=model_dir)
    encoded = encode_split(examples, tokenizer=loaded.tokenizer, labels=loaded.labels,
                           max_length=_saved_max_length(loaded.config))
    return evaluate_encoded(Path(model_dir), encoded, with_predictions=with_predictions)


@dataclass(frozen=True)
class Prediction:
    text: str
    label: str
    probabilities: dict[str, float]


def predict(model_dir: str | Path, texts: Sequence[str], *, batch_size: int = 64) -> list[Prediction]:
    """The most likely label and every label's probability for each text."""
    loaded = load_model_dir(model_dir)
    if loaded.tokenizer is None or loaded.labels is None:
        raise CheckpointError(f"{model_dir}: a classifier directory needs tokenizer.json and labels.json")
    ids = loaded.tokenizer.encode_batch(list(texts), max_length=_saved_max_length(loaded.config))
    predictions: list[Prediction] = []
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            batch_ids, mask = pad_batch(ids[start:start + batch_size], pad_id=loaded.tokenizer.pad_id)
            probabilities = loaded.model(batch_ids, mask=mask).float().softmax(-1)
            for offset, row in enumerate(probabilities.tolist()):
                scores = dict(zip(loaded.labels.names, row, strict=True))
                predictions.append(Prediction(texts[start + offset], max(scores, key=scores.__getitem__), scores))
    return predictions


def _saved_max_length(config: dict[str, Any]) -> int:
    return int(config.get("experiment", {}).get("data", {}).get("max_length", 512))
