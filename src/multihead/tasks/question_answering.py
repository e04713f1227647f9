"""Extractive question answering end to end: read SQuAD-style data, window it, train a ``SpanExtractor`` (from
scratch or from a pretrained encoder), score exact match and F1 as SQuAD v1.1's official script does, answer.

The Python API here is what ``multihead train`` and ``multihead eval`` call through the task registry; using a
saved model (``multihead answer``) is :mod:`multihead.tasks.qa_model`. A model directory records its windowing
(``qa`` in ``config.json``) so that answering windows texts the way training did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead.atomic import write_json_atomic
from multihead.data import BucketBatchSampler, split_by_fraction
from multihead.data.qa_windows import QAWindows
from multihead.data.squad import QAExample, read_qa_file, squad, squad_references
from multihead.errors import ConfigError
from multihead.experiment import MODEL_EXTRAS, ExperimentConfig
from multihead.model_dir import write_model_files
from multihead.models import SpanExtractor
from multihead.squad_metric import squad_scores
from multihead.tasks.qa_decode import SpanCollector, collect_batch
from multihead.tasks.qa_model import MAX_ANSWER_TOKENS, MAX_QUESTION_TOKENS, QAModel, evaluate_examples, qa_windows
from multihead.tasks.registry import Task, TaskResult
from multihead.tokenizers import Tokenizer
from multihead.training import TrainData, Trainer

__all__ = ["TASK", "QAResult", "QATask", "evaluate_qa", "load_qa_splits", "span_extractor_from_pretrained", "train_qa"]

Batch = dict[str, Tensor]
Log = Callable[[str], None]
METRICS = {"f1": "max", "exact_match": "max", "loss": "min"}
"""Validation figures a QA run may select on, with the direction of better."""


class QATask:
    """Cross-entropy of the gold start and end positions (averaged); exact match, F1 and loss to evaluate.

    Args:
        windows, examples: the evaluated split (batches name their windows by index).
        max_answer_tokens: longest span decoded.
    """

    def __init__(self, *, windows: QAWindows, examples: Sequence[QAExample],
                 max_answer_tokens: int = MAX_ANSWER_TOKENS) -> None:
        self.windows, self.examples, self.max_answer_tokens = windows, examples, max_answer_tokens
        self.references = squad_references(examples)

    def count(self, batch: Batch) -> int:
        return int(batch["ids"].shape[0])

    @staticmethod
    def _loss(start_logits: Tensor, end_logits: Tensor, batch: Batch) -> Tensor:
        return (F.cross_entropy(start_logits.float(), batch["starts"], reduction="sum")
                + F.cross_entropy(end_logits.float(), batch["ends"], reduction="sum")) / 2

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        start_logits, end_logits = model(batch["ids"], mask=batch["mask"])  # (B, T) each
        return self._loss(start_logits, end_logits, batch)

    def evaluate(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        collector = SpanCollector(self.windows, self.examples)
        loss, count = 0.0, 0
        for batch in batches:
            start_logits, end_logits = collect_batch(collector, model, batch, max_answer_tokens=self.max_answer_tokens)
            loss += float(self._loss(start_logits, end_logits, batch))
            count += self.count(batch)
        scores = squad_scores(collector.predictions(), self.references)
        return {"f1": float(scores["f1"]), "exact_match": float(scores["exact_match"]), "loss": loss / max(count, 1)}


# --------------------------------------------------------------------------------------------- data and model
def load_qa_splits(config: ExperimentConfig) -> dict[str, list[QAExample]]:
    """``train``, ``validation`` and (when known) ``test`` questions: SQuAD v1.1 as the project splits it
    (``data.dataset: squad``), or SQuAD JSON / JSON lines files; without ``data.validation``, a seeded
    ``data.validation_fraction`` of the training contexts (with all their questions) is held out."""
    data = config.data
    if data.dataset == "squad":
        return squad()
    if data.dataset is not None or data.train is None:
        raise ConfigError(f"task question-answering reads data.dataset 'squad' or data.train (SQuAD JSON or JSON "
                          f"lines), got dataset {data.dataset!r}")
    splits = {"train": read_qa_file(data.train)}
    if data.validation:
        splits["validation"] = read_qa_file(data.validation)
    else:
        contexts = list(dict.fromkeys(example.context for example in splits["train"]))
        if len(contexts) < 2:
            raise ConfigError(f"{data.train}: one context only; give data.validation to hold out questions")
        seed = config.training.seed if data.split_seed is None else data.split_seed
        kept, _ = split_by_fraction(contexts, fractions=[1 - data.validation_fraction, data.validation_fraction],
                                    seed=seed)
        keep = set(kept)
        train = splits["train"]
        splits["train"] = [e for e in train if e.context in keep]
        splits["validation"] = [e for e in train if e.context not in keep]
    if data.test:
        splits["test"] = read_qa_file(data.test)
    return splits


def span_extractor_from_pretrained(path: str | Path, *, overrides: Mapping[str, Any] | None = None
                                   ) -> SpanExtractor:
    """A ``SpanExtractor`` whose encoder comes from a pretrained directory (or ``package:NAME``); the span layer
    is new (initialised from torch's global generator).

    Args:
        overrides: dropout rates (``dropout``, ``attention_dropout``, ``activation_dropout``) to change.
    """
    from multihead.interop import load_pretrained
    from multihead.interop.pretrained import encoder_of

    overrides = dict(overrides or {})
    fixed = sorted(set(overrides) - {"dropout", "attention_dropout", "activation_dropout"})
    if fixed:
        raise ConfigError(f"model.{fixed[0]} is fixed by the pretrained model at {path}; with init_from only "
                          f"dropout, attention_dropout and activation_dropout may be set")
    encoder = encoder_of(load_pretrained(path).model)
    model = SpanExtractor(encoder.config.replace(**overrides))
    model.encoder.load_state_dict(encoder.state_dict())
    return model.train()


def _tokenizer(config: ExperimentConfig, splits: Mapping[str, Sequence[QAExample]], resume: bool) -> Tokenizer:
    from multihead.tasks.classification import build_tokenizer

    last = Path(config.output_dir) / "last" / "tokenizer.json"
    if resume and last.is_file():
        return Tokenizer.load(last)
    texts = list(dict.fromkeys(e.context for e in splits["train"])) + [e.question for e in splits["train"]]
    tokenizer = build_tokenizer(config, texts)
    if tokenizer.pad_id is None:
        raise ConfigError("the tokenizer has no padding token ([PAD] or <pad>)")
    return tokenizer


def _model(config: ExperimentConfig, tokenizer: Tokenizer) -> SpanExtractor:
    if config.architecture != "transformer" or config.pretraining.steps:
        raise ConfigError("task question-answering trains a Transformer SpanExtractor: leave model.architecture "
                          "unset and pretraining.steps at 0")
    unknown = sorted(set(config.model) & set(MODEL_EXTRAS) - {"preset", "init_from"})
    if unknown:
        raise ConfigError(f"model.{unknown[0]} does not apply to question answering")
    if config.model.get("init_from"):
        fields = {key: value for key, value in config.model.items() if key not in MODEL_EXTRAS}
        model = span_extractor_from_pretrained(config.model["init_from"], overrides=fields)
    else:
        model = SpanExtractor(config.model_config(vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id))
    if model.config.positions == "learned" and model.config.max_length < config.data.max_length:
        raise ConfigError(f"model.max_length ({model.config.max_length}) must be >= data.max_length "
                          f"({config.data.max_length}) for learned positions")
    return model


# --------------------------------------------------------------------------------------------- training
@dataclass
class QAResult:
    """What :func:`train_qa` did."""

    output_dir: Path
    best_validation: float | None
    best_step: int | None
    validation_report: dict[str, Any]
    test_report: dict[str, Any] | None
    seconds: float
    interrupted: bool = False


def train_qa(config: ExperimentConfig, *, resume: bool = False, test: bool = True, log: Log = print) -> QAResult:
    """Train on ``train``, pick the best step on ``validation`` (``training.metric``: ``f1``, ``exact_match`` or
    ``loss``), report ``test`` once (unless ``test`` is False), save ``best/``."""
    if METRICS.get(config.training.metric) != config.training.mode:
        raise ConfigError(f"task question-answering: training.metric/mode must be one of "
                          f"{', '.join(f'{k}/{v}' for k, v in METRICS.items())}, got "
                          f"{config.training.metric}/{config.training.mode}")
    started = time.perf_counter()
    output_dir, data = Path(config.output_dir), config.data
    splits = load_qa_splits(config)
    log(" ".join(f"{name} {len(examples):,}" for name, examples in splits.items()) + " questions")
    tokenizer = _tokenizer(config, splits, resume)
    settings = {"max_length": data.max_length, "doc_stride": data.doc_stride,
                "max_question_tokens": MAX_QUESTION_TOKENS, "max_answer_tokens": MAX_ANSWER_TOKENS}
    encoded = {name: qa_windows(examples, tokenizer, settings) for name, examples in splits.items() if name != "test"}
    train = encoded["train"]
    held = sum(1 for start in train.starts if start > 0)
    log(f"{len(train):,} training windows ({sum(map(len, train.ids)):,} tokens; {held:,} hold their answer); "
        f"{len(encoded['validation']):,} validation windows")
    torch.manual_seed(config.training.seed)
    model = _model(config, tokenizer)
    log(f"model: {sum(p.numel() for p in model.parameters()):,} parameters")
    pad_id, batch_size = tokenizer.pad_id or 0, config.training.batch_size
    sampler = BucketBatchSampler([len(x) for x in train.ids], batch_size=batch_size, shuffle=True,
                                 seed=config.training.seed, drop_last=len(train) >= batch_size)
    task = QATask(windows=encoded["validation"], examples=splits["validation"])
    extra = {"task": "question-answering", "experiment": config.to_dict(), "qa": settings}

    def save_files(directory: Path, trained: nn.Module) -> None:
        write_model_files(directory, model=trained, tokenizer=tokenizer, extra=extra)

    trainer = Trainer(model=model, task=task, config=config.training, output_dir=output_dir, save_files=save_files,
                      train=TrainData(sampler=sampler, collate=lambda indices: train.collate(indices, pad_id=pad_id)),
                      validation=lambda: encoded["validation"].batches(batch_size=2 * batch_size, pad_id=pad_id))
    result = trainer.fit(resume=resume)
    validation = next((e for e in result.evaluations if e["step"] == result.best_step), {})
    test_report = None
    if test and "test" in splits and not result.interrupted:
        test_report = evaluate_examples(output_dir / "best", splits["test"], split="test")
        write_json_atomic(output_dir / "test_metrics.json", test_report)
    return QAResult(output_dir=output_dir, best_validation=result.best_metric, best_step=result.best_step,
                    validation_report=validation, test_report=test_report, seconds=time.perf_counter() - started,
                    interrupted=result.interrupted)


# --------------------------------------------------------------------------------------------- scoring
def evaluate_qa(model_dir: str | Path, *, split: str = "test", data: str | None = None,
                references: str | None = None, options: Mapping[str, Any] | None = None, limit: int | None = None,
                **_: Any) -> dict[str, Any]:
    """The registry's ``evaluate``: score a split of the model's own data set, or a SQuAD/JSON lines file
    (``data``); ``limit`` scores the first N questions only."""
    if references is not None:
        raise ConfigError("a question-answering file carries its own answers; drop --references")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {limit}")
    if data is not None:
        examples = read_qa_file(data)
    else:
        from multihead.experiment import recorded_split

        examples = recorded_split(QAModel.load(model_dir).config, split, load_qa_splits, where=model_dir)
    options = dict(options or {})
    return evaluate_examples(model_dir, examples[:limit] if limit else examples, split=None if data else split,
                             data=data, max_answer_tokens=options.get("max_answer_tokens"))


# --------------------------------------------------------------------------------------------- the registry entry
def _report_lines(report: dict[str, Any]) -> list[str]:
    where = f"split {report['split']}" if report.get("split") else str(report.get("data"))
    lines = [f"exact match {report['exact_match']:.2f}   F1 {report['f1']:.2f}   questions {report['questions']:,} "
             f"({where}; SQuAD v1.1 official scoring)",
             f"{report['windows']:,} windows answered in {report['seconds']:.0f} s wall, {report['cpu_seconds']:.0f} s "
             f"CPU ({report['threads']} threads)"]
    for shown in report.get("examples", []):
        lines.append(f"  Q: {shown['question']}  ->  {shown['prediction']!r}  (references: {shown['answers']})")
    return lines


def _train_task(config: ExperimentConfig, *, resume: bool = False, test: bool = True, log: Log = print
                ) -> TaskResult:
    result = train_qa(config, resume=resume, test=test, log=log)
    test_report = None if result.test_report is None else {
        key: value for key, value in result.test_report.items() if key != "predictions"}
    figures = {key: result.validation_report[key] for key in ("exact_match", "f1") if key in result.validation_report}
    notes = (f"validation exact match {figures['exact_match']:.2f}, F1 {figures['f1']:.2f}",) if figures else ()
    return TaskResult(task=config.task, output_dir=result.output_dir, seconds=result.seconds,
                      best_step=result.best_step, metric=config.training.metric,
                      best_validation=result.best_validation, validation=figures, test=test_report,
                      interrupted=result.interrupted, notes=notes)


def _evaluate_task(model_dir: str | Path, **options: Any) -> dict[str, Any]:
    report = evaluate_qa(model_dir, **options)
    report.pop("predictions")
    return report


TASK = Task(
    name="question-answering", train=_train_task, evaluate=_evaluate_task, report_lines=_report_lines,
    served_as="question-answering",
    next_steps=lambda best: [f'multihead answer {best} --question "Who wrote it?" --context-file passage.txt',
                             f"multihead eval {best} --split test"],
)
