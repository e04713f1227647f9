"""Train a classifier architecture on the long-range probe through the shared trainer; accuracy at each distance.

Training and validation examples mix the distances (each example draws its ``k``); the test set holds
``test_examples`` per distance, so accuracy against ``k`` comes from examples that differ only in which pair the
query names. Seeds: training ``seed``, validation ``seed + 1``, test ``seed + 2 + index of k``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from multihead.compare.config import ProbeSettings
from multihead.compare.probe import ProbeExample, generate_probe
from multihead.data import BucketBatchSampler
from multihead.experiment import ExperimentConfig
from multihead.model_dir import load_model_dir, write_model_files
from multihead.tasks.classification import ClassificationTask, EncodedExamples, build_classifier
from multihead.training import TrainData, Trainer

__all__ = ["train_probe"]


def _encoded(examples: list[ProbeExample]) -> EncodedExamples:
    return EncodedExamples(ids=[e.ids for e in examples], labels=[e.label for e in examples])


def train_probe(experiment: ExperimentConfig, settings: ProbeSettings, *, log: Callable[[str], None] = print
                ) -> dict[str, Any]:
    """Train ``experiment``'s model section on the probe; validation accuracy and test accuracy per distance."""
    started = time.perf_counter()
    spec, training = settings.spec, experiment.training
    seed = training.seed
    train = _encoded(generate_probe(spec, n=settings.train_examples, seed=seed))
    validation = _encoded(generate_probe(spec, n=settings.validation_examples, seed=seed + 1))
    tests = {k: _encoded(generate_probe(spec, n=settings.test_examples, seed=seed + 2 + index, distance=k))
             for index, k in enumerate(spec.distances)}
    torch.manual_seed(seed)
    model = build_classifier(experiment, vocab_size=spec.vocab_size, pad_id=0, n_classes=spec.n_values)
    log(f"probe: {len(train.ids):,} training sequences of {min(map(len, train.ids))}-{spec.max_length} tokens; "
        f"model: {sum(p.numel() for p in model.parameters()):,} parameters")
    batch_size = training.batch_size
    sampler = BucketBatchSampler([len(x) for x in train.ids], batch_size=batch_size, shuffle=True, seed=seed,
                                 drop_last=len(train.ids) >= batch_size)
    task = ClassificationTask(label_names=[str(value) for value in range(spec.n_values)])
    output_dir = Path(experiment.output_dir)
    extra = {"task": "probe", "experiment": experiment.to_dict()}
    trainer = Trainer(
        model=model, task=task,
        train=TrainData(sampler=sampler, collate=lambda indices: train.collate(indices, pad_id=0)),
        validation=lambda: validation.batches(batch_size=2 * batch_size, pad_id=0),
        config=training, output_dir=output_dir,
        save_files=lambda directory, trained: write_model_files(directory, model=trained, extra=extra))
    result = trainer.fit()
    best = load_model_dir(output_dir / "best").model
    with torch.no_grad():
        by_distance = {k: task.evaluate(best, examples.batches(batch_size=2 * batch_size, pad_id=0))["accuracy"]
                       for k, examples in tests.items()}
    log("probe test accuracy by distance: " + ", ".join(f"k={k} {a:.3f}" for k, a in by_distance.items()))
    return {"best_step": result.best_step, "steps": result.step, "seconds": time.perf_counter() - started,
            "metric": "accuracy", "validation": {"accuracy": result.best_metric},
            "test": {"accuracy": sum(by_distance.values()) / len(by_distance)},
            "accuracy_by_distance": by_distance}
