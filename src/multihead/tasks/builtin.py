"""The shipped tasks as :class:`~multihead.tasks.registry.Task` entries: classification, translation,
abstractive and extractive summarisation, language modelling.

Each entry adapts its task module's own functions (``train_classifier``, ``train_seq2seq``, ...) to the
registry's shapes; the work itself stays in those modules. Heavy imports happen inside the adapters.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from multihead.errors import ConfigError
from multihead.tasks.registry import Task, TaskResult
from multihead.tasks.reports import classification_lines, json_lines, scores_then_outputs

__all__ = ["ABSTRACTIVE", "CLASSIFICATION", "EXTRACTIVE", "LANGUAGE_MODEL", "TRANSLATION"]

Log = Callable[[str], None]


# classification ----------------------------------------------------------------------------------------------

def _train_classification(config: Any, *, resume: bool = False, test: bool = True, log: Log = print) -> TaskResult:
    from multihead.tasks.classification import train_classifier
    from multihead.tasks.ensemble import train_ensemble

    train = train_ensemble if config.model.get("ensemble", 1) > 1 else train_classifier
    result = train(config, resume=resume, log=log, report_test=test)
    notes = result.notes + ((f"skipped {result.skipped_rows} bad rows",) if result.skipped_rows else ())
    return TaskResult(task=config.task, output_dir=result.output_dir, seconds=result.seconds,
                      best_step=result.best_step, metric=config.training.metric,
                      best_validation=result.best_validation, test=result.test_report,
                      interrupted=result.interrupted, notes=notes)


def saved_fields(model_dir: str | Path) -> tuple[str, str]:
    """The text and label field names a classifier was trained with (``text``/``label`` when not recorded)."""
    data = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")).get("experiment", {}).get("data")
    data = data if isinstance(data, Mapping) else {}
    return str(data.get("text_field", "text")), str(data.get("label_field", "label"))


def _evaluate_classification(model_dir: str | Path, *, split: str = "test", data: str | None = None,
                             references: str | None = None, options: Mapping[str, Any] | None = None,
                             limit: int | None = None, fields: tuple[str | None, str | None] = (None, None),
                             with_predictions: bool = False) -> dict[str, Any]:
    from multihead.tasks.classification import evaluate_classifier, evaluate_classifier_split

    if data is None:
        return evaluate_classifier_split(model_dir, split, with_predictions=with_predictions)
    text_field, label_field = saved_fields(model_dir)
    return evaluate_classifier(model_dir, data, text_field=fields[0] or text_field,
                               label_field=fields[1] or label_field, with_predictions=with_predictions)


def _compare_classification(config: Any, result: TaskResult, decoding: Mapping[str, Any]) -> dict[str, Any]:
    test = result.test or {}
    return {"metric": "accuracy",
            "test": {key: test[key] for key in ("accuracy", "accuracy_interval", "macro_f1") if key in test}}


def _classifier_study(model_dir: str | Path, **options: Any) -> Any:
    from multihead.tasks.head_studies import classifier_study

    return classifier_study(Path(model_dir), **options)


CLASSIFICATION = Task(
    name="classification", train=_train_classification, evaluate=_evaluate_classification,
    report_lines=classification_lines, paired=True, compare_scores=_compare_classification, served_as="classification",
    head_study=_classifier_study,
    next_steps=lambda best: [f'multihead predict {best} "some new text" --json', f"multihead eval {best} --split test"],
)


# sequence to sequence ------------------------------------------------------------------------------------------

def _train_seq2seq(config: Any, *, resume: bool = False, test: bool = True, log: Log = print) -> TaskResult:
    from multihead.tasks.seq2seq import train_seq2seq

    result = train_seq2seq(config, resume=resume, log=log)
    notes = (f"skipped {result.skipped_rows} bad rows",) if result.skipped_rows else ()
    return TaskResult(task=config.task, output_dir=result.output_dir, seconds=result.seconds,
                      best_step=result.best_step, metric=config.training.metric,
                      best_validation=result.best_validation, interrupted=result.interrupted, notes=notes)


def _evaluate_seq2seq(model_dir: str | Path, *, split: str = "test", data: str | None = None,
                      references: str | None = None, options: Mapping[str, Any] | None = None,
                      limit: int | None = None, summaries: bool = False, **_: Any) -> dict[str, Any]:
    from multihead.tasks.seq2seq_eval import bleu_chrf_scores, evaluate_seq2seq, rouge_scores

    if data is not None and references is None:
        raise ConfigError("a translation or summarisation model scores DATA against --references FILE "
                          "(line-aligned), or a split of its own data set with --split")
    pair = None if data is None else (data, str(references))
    return evaluate_seq2seq(model_dir, split=split, data=pair, decoding=options, limit=limit,
                            score=rouge_scores if summaries else bleu_chrf_scores)


def _compare_translation(config: Any, result: TaskResult, decoding: Mapping[str, Any]) -> dict[str, Any]:
    scores: dict[str, Any] = {"metric": "bleu"}
    for split in ("validation", "test"):
        report = _evaluate_seq2seq(result.output_dir / "best", split=split, options=decoding)
        scores[split] = {"bleu": report["bleu"], "chrf": report["chrf"], "decoding_seconds": report["seconds"]}
        scores["bleu_signature"] = report["bleu_signature"]
    return scores


def _translation_study(model_dir: str | Path, **options: Any) -> Any:
    from multihead.tasks.head_studies import translation_study

    return translation_study(Path(model_dir), **options)


TRANSLATION = Task(
    name="translation", train=_train_seq2seq, evaluate=_evaluate_seq2seq, report_lines=scores_then_outputs,
    compare_scores=_compare_translation, head_study=_translation_study, model_inputs="translation",
    served_as="translation",
    next_steps=lambda best: [f'multihead translate {best} "A dog runs on the beach." --stream',
                             f"multihead eval {best} --split test"],
)

ABSTRACTIVE = Task(
    name="abstractive-summarization", train=_train_seq2seq, evaluate=partial(_evaluate_seq2seq, summaries=True),
    report_lines=scores_then_outputs, served_as="summarization",
    next_steps=lambda best: [f"multihead summarize {best} --file article.txt", f"multihead eval {best} --split test"],
)


# extractive summarisation --------------------------------------------------------------------------------------

def _train_extractive(config: Any, *, resume: bool = False, test: bool = True, log: Log = print) -> TaskResult:
    from multihead.tasks.extractive import train_extractive

    result = train_extractive(config, resume=resume, log=log, test=test)
    return TaskResult(task=config.task, output_dir=result.output_dir, seconds=result.seconds,
                      best_step=result.best_step, metric="sentence F1", best_validation=result.best_validation,
                      validation=result.validation_report, test=result.test_report, interrupted=result.interrupted,
                      notes=(f"selection rule (chosen on validation): {result.selection}",))


def _evaluate_extractive(model_dir: str | Path, *, split: str = "test", data: str | None = None,
                         **_: Any) -> dict[str, Any]:
    from multihead.tasks.extractive import evaluate_extractive

    if data is not None:
        raise ConfigError("an extractive summariser is scored on a split of BBC News (--split), not on DATA")
    return evaluate_extractive(model_dir, split=split)


def _summarize_extractive(model_dir: str | Path, texts: list[str], *, sentences: int | None = None) -> list[str]:
    from multihead.tasks.extractive import summarize_extractive

    return [" ".join(chosen) for chosen in summarize_extractive(model_dir, texts, k=sentences)]


EXTRACTIVE = Task(
    name="extractive-summarization", train=_train_extractive, evaluate=_evaluate_extractive, report_lines=json_lines,
    summarize=_summarize_extractive, served_as="summarization",
    next_steps=lambda best: [f"multihead summarize {best} --file article.txt"],
)


# language modelling --------------------------------------------------------------------------------------------

def _train_language_model(config: Any, *, resume: bool = False, test: bool = True, log: Log = print) -> TaskResult:
    from multihead.tasks.language_model import train_language_model

    result = train_language_model(config, resume=resume, log=log)
    scores = dict(result.validation or {})
    notes = ()
    if "perplexity" in scores:
        notes = (f"validation perplexity {scores['perplexity']:.2f}, "
                 f"{scores.get('bits_per_character', float('nan')):.3f} bits per character",)
    return TaskResult(task=config.task, output_dir=result.output_dir, seconds=result.seconds,
                      best_step=result.best_step, metric="loss (nats per token)",
                      best_validation=result.best_validation, validation=scores, interrupted=result.interrupted,
                      notes=notes)


def _evaluate_language_model(model_dir: str | Path, *, split: str = "validation", data: str | None = None,
                             options: Mapping[str, Any] | None = None, **_: Any) -> dict[str, Any]:
    from multihead.tasks.text_generator import evaluate_language_model

    return evaluate_language_model(model_dir, split=split, file=data, window=(options or {}).get("window"))


def _compare_language_model(config: Any, result: TaskResult, decoding: Mapping[str, Any]) -> dict[str, Any]:
    loss = result.best_validation
    return {"metric": "perplexity",
            "validation": {"loss": loss, "perplexity": math.exp(loss) if loss is not None else None}}


LANGUAGE_MODEL = Task(
    name="language-model", train=_train_language_model, evaluate=_evaluate_language_model, report_lines=json_lines,
    compare_scores=_compare_language_model, model_inputs="language-model", served_as="generation",
    next_steps=lambda best: [f"multihead generate {best} --prompt 'ROMEO:' --do-sample"],
)
