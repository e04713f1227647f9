"""Head importance and pruning of a saved model on its data: the tables, plots and pruned model that
``multihead heads`` writes. Classifiers are scored by accuracy, translation models by sacreBLEU BLEU.

A :class:`HeadStudy` (the model, its data and its scoring) comes from the task layer
(:mod:`multihead.tasks.head_studies`, found through the task registry); this module only analyses it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from multihead.inspect.importance import attention_modules, head_importance
from multihead.inspect.pruning import PruningStep, heads_to_prune, prune_heads, pruning_curve

__all__ = ["HeadStudy", "measure_speed", "prune_and_save", "study_curve", "write_curve",
           "write_importance"]


@dataclass
class HeadStudy:
    """A saved model with the data and scoring its task needs.

    Attributes:
        metric: the headline metric (``accuracy`` or ``bleu``).
        batches: teacher-forced batches of a split for importance (a fresh iterable per call).
        evaluate: ``(model, split) -> metrics`` with the heads masked or pruned as they are.
        run: ``(model, split) -> tokens processed``: the work whose speed is measured.
        save: writes a (pruned) model directory with the original's tokenizers, labels and records.
    """

    model: nn.Module
    metric: str
    splits: list[str]
    batches: Callable[[str], Iterable[Any]]
    loss: Callable[[nn.Module, Any], Tensor]
    evaluate: Callable[[nn.Module, str], dict[str, float]]
    run: Callable[[nn.Module, str], int]
    save: Callable[[nn.Module, Path], Path]


def study_curve(study: HeadStudy, *, step: float, recompute: bool, up_to: float = 1.0,
                log: Callable[[str], None] | None = None) -> list[PruningStep]:
    """The pruning curve: importance and choices on ``splits[0]``, every split evaluated at each step."""
    choose = study.splits[0]

    def importance(model: nn.Module, keep: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
        return head_importance(model, study.batches(choose), study.loss, keep=keep)

    def evaluate(model: nn.Module) -> dict[str, float]:
        return {f"{split}_{name}": value for split in study.splits
                for name, value in study.evaluate(model, split).items()}

    return pruning_curve(study.model, evaluate=evaluate, importance=importance, step=step, recompute=recompute,
                         up_to=up_to, log=log)


def write_importance(scores: Mapping[str, Tensor], model: nn.Module, out: Path, *, title: str) -> None:
    """``importance.json``, ``importance.md`` (module x head) and ``importance.png`` (a heatmap per kind)."""
    modules = attention_modules(model)
    table = {name: dict(zip(modules[name].head_ids, value.tolist(), strict=True)) for name, value in scores.items()}
    (out / "importance.json").write_text(json.dumps({"title": title, "importance": table}, indent=2) + "\n")
    heads = sorted({head for row in table.values() for head in row})
    lines = [f"# Head importance: {title}", "", "| module | " + " | ".join(f"head {h}" for h in heads) + " |",
             "| --- |" + " --- |" * len(heads)]
    lines += [f"| {name} | " + " | ".join(f"{row[h]:.3f}" if h in row else "pruned" for h in heads) + " |"
              for name, row in table.items()]
    (out / "importance.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = ["encoder self", "decoder self", "decoder cross"]
    kinds = [k for k in order if any(n.startswith(k.split()[0] + ".") and n.endswith(f".{k.split()[1]}_attn")
                                     for n in table)]
    figure, axes = plt.subplots(1, len(kinds), figsize=(3.2 * len(kinds) + 1.0, 3.0), squeeze=False,
                                layout="constrained")
    for axis, kind in zip(axes[0], kinds, strict=True):
        stack, attention = kind.split()
        rows = [name for name in table if name.startswith(stack + ".") and name.endswith(f".{attention}_attn")]
        grid = [[table[name].get(h, float("nan")) for h in heads] for name in rows]
        image = axis.imshow(grid, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        axis.set_title(f"{stack} {attention}-attention", fontsize=9)
        axis.set_xticks(range(len(heads)), [str(h) for h in heads])
        axis.set_yticks(range(len(rows)), [f"layer {name.split('.')[1]}" for name in rows])
        axis.set_xlabel("head")
        for y, row in enumerate(grid):
            for x, value in enumerate(row):
                axis.text(x, y, "pruned" if value != value else f"{value:.2f}", ha="center", va="center",
                          fontsize=7, color="white")
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="importance (L2-normalised per module)")
    figure.suptitle(title, fontsize=9)
    figure.savefig(out / "importance.png", dpi=120, bbox_inches="tight")
    plt.close(figure)


def write_curve(steps: list[PruningStep], out: Path, *, metric: str, title: str) -> None:
    """``curve.json``, ``curve.md`` (a row per step) and ``curve.png`` (the metric of every split)."""
    records = [dataclasses.asdict(step) for step in steps]
    (out / "curve.json").write_text(json.dumps({"title": title, "metric": metric, "steps": records}, indent=2) + "\n")
    columns = list(steps[0].metrics)
    header = "| heads pruned | share | " + " | ".join(columns) + " | heads removed at this step |"
    lines = [f"# Pruning curve: {title}", "", header, "| --- | --- |" + " --- |" * (len(columns) + 1)]
    previous: dict[str, tuple[int, ...]] = {}
    for step in steps:
        new = [f"{name}:{head}" for name, ids in step.removed.items() for head in ids
               if head not in previous.get(name, ())]
        lines.append(f"| {step.pruned} | {step.fraction:.0%} | " + " | ".join(f"{step.metrics[c]:.4f}" for c in columns)
                     + f" | {', '.join(new)} |")
        previous = step.removed
    (out / "curve.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5.0, 3.4))
    for column in (c for c in columns if c.endswith("_" + metric)):
        axis.plot([s.fraction * 100 for s in steps], [s.metrics[column] for s in steps], marker="o",
                  label=column.replace("_", " "))
    axis.set_xlabel("heads pruned (%)")
    axis.set_ylabel(metric)
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.savefig(out / "curve.png", dpi=120, bbox_inches="tight")
    plt.close(figure)


def measure_speed(study: HeadStudy, models: Mapping[str, nn.Module], split: str, *, rounds: int = 5
                  ) -> dict[str, dict[str, float]]:
    """Tokens per second of each model on ``split``, at one thread, CPU time, the models interleaved each round
    (the order alternating). Returns per model the median rate and the range over rounds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rates: dict[str, list[float]] = {name: [] for name in models}
    try:
        for round_ in range(rounds):
            names = list(models) if round_ % 2 == 0 else list(reversed(models))
            for name in names:
                started = time.process_time()
                tokens = study.run(models[name], split)
                rates[name].append(tokens / (time.process_time() - started))
    finally:
        torch.set_num_threads(threads)
    return {name: {"tokens_per_s": sorted(values)[len(values) // 2], "min": min(values), "max": max(values)}
            for name, values in rates.items()}


def prune_and_save(study: HeadStudy, steps: list[PruningStep], fraction: float, out: Path, *,
                   speed_rounds: int = 0) -> dict[str, Any]:
    """Physically prune the heads the curve removed at ``fraction``, save the model to ``out/pruned``, score it
    on every split and, with ``speed_rounds``, time it against the unpruned model on the first split."""
    removed = heads_to_prune(steps, fraction)
    pruned = prune_heads(study.model, removed).eval()
    directory = study.save(pruned, out / "pruned")
    summary = {"fraction": fraction, "removed": removed,
               "heads": sum(m.n_heads for m in attention_modules(pruned).values()),
               "parameters": sum(p.numel() for p in pruned.parameters()),
               "original_parameters": sum(p.numel() for p in study.model.parameters()),
               "metrics": {split: study.evaluate(pruned, split) for split in study.splits},
               "directory": str(directory)}
    if speed_rounds:
        summary["speed"] = measure_speed(study, {"unpruned": study.model, "pruned": pruned}, study.splits[0],
                                         rounds=speed_rounds)
    (out / "pruned.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
