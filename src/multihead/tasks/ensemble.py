"""Train an ensemble of Transformer classifiers: ``model.ensemble`` members, one seed each, one model directory.

Each member is an ordinary classification run (``OUTPUT_DIR/members/<i>/``, seed ``training.seed + i``) that
picks its best step on validation and never sees the test split. The ensemble of their best checkpoints is
scored on validation, saved as ``OUTPUT_DIR/best`` (a ``ClassifierEnsemble`` that ``predict``/``eval`` load like
any classifier), and then, once, on test. A finished member leaves ``done.json``; ``resume`` skips finished
members and continues the interrupted one. ``OUTPUT_DIR/metrics.jsonl`` sums the run up: one line a finished
member (its seed, validation score and best step), then one for the ensemble; each member's own ``last/`` and
``metrics.jsonl`` stay in its folder.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from multihead.atomic import atomic_directory, write_json_atomic, write_text_atomic
from multihead.errors import CheckpointError
from multihead.experiment import ExperimentConfig
from multihead.model_dir import load_model_dir, write_model_files
from multihead.models.ensemble import ClassifierEnsemble
from multihead.tasks.classification import (
    ClassificationResult,
    ClassificationTask,
    encode_split,
    evaluate_encoded,
    load_splits,
    train_classifier,
)

__all__ = ["member_config", "train_ensemble"]

DONE_FILE = "done.json"


def member_config(config: ExperimentConfig, index: int) -> ExperimentConfig:
    """The single-classifier run of member ``index``: its own folder and seed ``training.seed + index``, the
    ensemble's held-out validation split (``data.split_seed``)."""
    model = {key: value for key, value in config.model.items() if key != "ensemble"}
    split_seed = config.training.seed if config.data.split_seed is None else config.data.split_seed
    return dataclasses.replace(
        config, output_dir=str(Path(config.output_dir) / "members" / str(index)), model=model,
        data=dataclasses.replace(config.data, split_seed=split_seed),
        training=dataclasses.replace(config.training, seed=config.training.seed + index))


def train_ensemble(config: ExperimentConfig, *, resume: bool = False, log: Callable[[str], None] = print,
                   report_test: bool = True) -> ClassificationResult:
    """Train ``config.model['ensemble']`` members, then save, score and (unless ``report_test=False``) report
    their ensemble on test."""
    started = time.perf_counter()
    size = int(config.model["ensemble"])
    output_dir = Path(config.output_dir)
    member_scores: list[dict[str, Any]] = []
    for index in range(size):
        member = member_config(config, index)
        member_dir = Path(member.output_dir)
        done = member_dir / DONE_FILE
        if resume and done.is_file():
            member_scores.append(json.loads(done.read_text()))
            log(f"member {index + 1}/{size}: finished earlier (validation {member_scores[-1]['validation']:.4f})")
            continue
        log(f"member {index + 1}/{size} (seed {member.training.seed}) -> {member_dir}")
        result = train_classifier(member, resume=resume and (member_dir / "last").is_dir(), log=log,
                                  report_test=False)
        if result.interrupted:
            note = (f"ensemble: member {index + 1}/{size} was interrupted; its state is in {member_dir / 'last'} "
                    "(run again with --resume to finish the ensemble)")
            _write_summary(output_dir, member_scores, None)
            return dataclasses.replace(result, output_dir=output_dir, test_report=None, notes=(note,),
                                       seconds=time.perf_counter() - started)
        if result.best_validation is None:
            raise RuntimeError(f"member {index} finished without a validation score")  # the trainer always scores
        scores = {"seed": member.training.seed, "validation": result.best_validation, "best_step": result.best_step,
                  "seconds": result.seconds}
        write_json_atomic(done, scores)
        member_scores.append(scores)

    member_dirs = [Path(member_config(config, i).output_dir) / "best" for i in range(size)]
    members = [load_model_dir(directory) for directory in member_dirs]
    first = members[0]
    for loaded, directory in zip(members, member_dirs, strict=True):
        same_tokenizer = (directory / "tokenizer.json").read_bytes() == (member_dirs[0] / "tokenizer.json").read_bytes()
        if not same_tokenizer or loaded.labels.names != first.labels.names:
            raise CheckpointError(f"{directory}: another tokenizer or label set than {member_dirs[0]}")
    ensemble = ClassifierEnsemble.from_members([loaded.model for loaded in members]).eval()
    splits = load_splits(config)
    max_length, batch_size = config.data.max_length, 2 * config.training.batch_size
    encoded = {name: encode_split(splits[name], tokenizer=first.tokenizer, labels=first.labels, max_length=max_length)
               for name in ("validation", "test") if name in splits}  # the members were trained already
    task = ClassificationTask(label_names=first.labels.names)
    with torch.no_grad():
        validation = task.evaluate(ensemble, encoded["validation"].batches(batch_size=batch_size,
                                                                          pad_id=first.tokenizer.pad_id))
    members_text = ", ".join(f"{scores['validation']:.4f}" for scores in member_scores)
    log(f"ensemble of {size}: validation accuracy {validation['accuracy']:.4f} (members {members_text})")
    extra = {"task": "classification", "experiment": config.to_dict(),
             "ensemble": {"members": member_scores, "validation": validation}}
    with atomic_directory(output_dir / "best") as staging:
        write_model_files(staging, model=ensemble, tokenizer=first.tokenizer, labels=first.labels, extra=extra)
    test_report = None
    if "test" in encoded and report_test:
        test_report = evaluate_encoded(output_dir / "best", encoded["test"], batch_size=batch_size)
        write_json_atomic(output_dir / "test_metrics.json", test_report)
    _write_summary(output_dir, member_scores, validation)
    steps = ", ".join(f"{scores['validation']:.4f} at step {scores['best_step']}" for scores in member_scores)
    note = (f"ensemble of {size} classifiers (members' best validation {config.training.metric}: {steps}); each "
            f"member's last/ and metrics.jsonl are in {output_dir / 'members'}/<i>/")
    return ClassificationResult(output_dir=output_dir, best_validation=validation[config.training.metric],
                                best_step=None, test_report=test_report, seconds=time.perf_counter() - started,
                                skipped_rows=0, notes=(note,))


def _write_summary(output_dir: Path, member_scores: list[dict[str, Any]], validation: dict[str, Any] | None) -> None:
    """``OUTPUT_DIR/metrics.jsonl``: a line a finished member, then the ensemble's validation scores (when known)."""
    lines = [{"member": index, **scores, "output_dir": str(output_dir / "members" / str(index))}
             for index, scores in enumerate(member_scores)]
    if validation is not None:
        lines.append({"ensemble": len(member_scores), "validation": validation})
    write_text_atomic(output_dir / "metrics.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
