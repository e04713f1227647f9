"""The ``multihead heads`` command: head importance, the pruning curve and a pruned model directory.
A thin shell over :mod:`multihead.inspect.pruning_report`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from multihead.errors import ConfigError

__all__ = ["add_heads_commands"]


def _heads(args: argparse.Namespace) -> int:
    from multihead.inspect.importance import attention_modules, head_importance
    from multihead.inspect.pruning import largest_within
    from multihead.inspect.pruning_report import (
        prune_and_save,
        study_curve,
        write_curve,
        write_importance,
    )

    if args.prune is not None and args.max_drop is not None:
        raise ConfigError("give --prune FRACTION or --max-drop POINTS, not both")
    if args.prune is not None and not 0.0 <= args.prune <= 1.0:
        raise ConfigError(f"--prune must be a fraction of the heads in [0, 1], got {args.prune}")
    if not 0.0 < args.step <= 1.0:
        raise ConfigError(f"--step must be in (0, 1], got {args.step}")
    splits = ["data" if args.data else args.split, *[s for s in args.also_split if s != args.split]]
    from multihead.tasks.registry import task_of_model

    task = task_of_model(args.model_dir)
    if task.head_study is None:
        raise ConfigError(f"{args.model_dir}: multihead heads scores classifiers and translation models; this "
                          f"model's task is {task.name!r:.80}")
    study = task.head_study(args.model_dir, splits=splits, data=args.data, references=args.references,
                            text_field=args.text_field, label_field=args.label_field, num_beams=args.num_beams,
                            limit=args.limit)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{args.model_dir}, importance on {splits[0]}"
    write_importance(head_importance(study.model, study.batches(splits[0]), study.loss), study.model, out,
                     title=title)
    print(f"head importance: {out / 'importance.md'} and importance.png")
    if not 0.0 <= args.up_to <= 1.0:
        raise ConfigError(f"--up-to must be in [0, 1], got {args.up_to}")
    steps = study_curve(study, step=args.step, recompute=not args.no_recompute, up_to=args.up_to, log=print)
    write_curve(steps, out, metric=study.metric,
                title=f"{title}, {'recomputed each step' if not args.no_recompute else 'ranked once'}")
    print(f"pruning curve: {out / 'curve.md'} and curve.png")
    if args.max_drop is not None:
        scale = 100.0 if study.metric == "accuracy" else 1.0  # points: accuracy in percent, BLEU as it is
        chosen = largest_within(steps, f"{splits[0]}_{study.metric}", args.max_drop, scale=scale)
        args.prune = chosen.fraction
        total = sum(module.n_heads for module in attention_modules(study.model).values())
        print(f"{chosen.pruned} of {total} heads go before {splits[0]} {study.metric} falls by more than "
              f"{args.max_drop:g} points")
    if args.prune is not None:
        summary = prune_and_save(study, steps, args.prune, out, speed_rounds=args.speed_rounds)
        scores = "; ".join(f"{split} " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                           for split, metrics in summary["metrics"].items())
        print(f"pruned model ({summary['heads']} heads left, {summary['parameters']:,} of "
              f"{summary['original_parameters']:,} parameters): {summary['directory']}\n  {scores}")
        for name, speed in summary.get("speed", {}).items():
            print(f"  {name}: {speed['tokens_per_s']:,.0f} tokens/s (1 thread, CPU time; "
                  f"{speed['min']:,.0f} to {speed['max']:,.0f})")
    return 0


def add_heads_commands(commands: Any) -> None:
    """Add ``heads`` to the ``multihead`` sub-command parser."""
    heads = commands.add_parser(
        "heads", help="head importance (Michel et al., 2019), the pruning curve, and a pruned model")
    heads.add_argument("model_dir", help="a classifier or translation model directory")
    heads.add_argument("data", nargs="?", help="classifier: a labelled TSV, CSV, JSONL or class folder; "
                       "translation: a source file (with --references); default: --split of the model's data")
    heads.add_argument("--out", required=True, help="directory for importance.*, curve.* and pruned/")
    heads.add_argument("--split", default="validation",
                       help="without DATA: the split of the model's own data set (default validation)")
    heads.add_argument("--also-split", action="append", default=[], metavar="SPLIT",
                       help="also score this split at every step (e.g. test); heads are chosen on the first")
    heads.add_argument("--references", help="reference translations, line-aligned with DATA")
    heads.add_argument("--prune", type=float, metavar="FRACTION",
                       help="save the model with this share of heads removed (the curve's choice) to OUT/pruned")
    heads.add_argument("--max-drop", type=float, metavar="POINTS",
                       help="instead of --prune: prune as far as the curve goes before the first split's metric "
                       "falls by more than POINTS (accuracy in percentage points, BLEU points)")
    heads.add_argument("--step", type=float, default=0.1, help="share of all heads removed per step (default 0.1)")
    heads.add_argument("--up-to", type=float, default=1.0, metavar="FRACTION",
                       help="end the curve at this share of the heads (default 1: prune them all)")
    heads.add_argument("--no-recompute", action="store_true",
                       help="rank heads once on the full model (default: recompute importance after each step)")
    heads.add_argument("--num-beams", type=int, default=1, help="beam size for translation (default 1: greedy)")
    heads.add_argument("--limit", type=int, help="use only the first N examples of each split")
    heads.add_argument("--speed-rounds", type=int, default=0,
                       help="with --prune: time pruned and unpruned models side by side, N interleaved rounds")
    heads.add_argument("--text-field", default="text", help="text column or key (default text)")
    heads.add_argument("--label-field", default="label", help="label column or key (default label)")
    heads.set_defaults(run=_heads)
