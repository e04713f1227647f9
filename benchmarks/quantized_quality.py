"""What weight-only int8 and int4 cost a trained classifier or translator: the test metric and the decoding time of
the float32 model directory and of its ``multihead quantize`` copies, in one run.

Run: ``python benchmarks/quantized_quality.py MODEL_DIR [--split test] [--limit N] [--threads 1]``

Each copy is written by :func:`multihead.quantize.directory.quantize_model_dir` (int8 per output channel; int4 in
groups of 32 with the output layer in int8, the defaults) and scored by the model's own task
(``multihead eval``): accuracy and macro-F1 for a classifier, sacreBLEU BLEU and chrF (beam 4) for a translator or
summariser (ROUGE), on the split the model recorded. Printed: each metric, its change from float32, and the
evaluation's wall time.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

METRICS = ("accuracy", "macro_f1", "bleu", "chrf", "rouge1", "rouge2", "rougeL")


def machine(threads: int) -> str:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {threads} threads; "
            f"torch {torch.__version__}; load average {load}")


def score(model_dir: Path, split: str, limit: int | None) -> tuple[dict[str, Any], float]:
    from multihead.tasks.registry import task_of_model

    started = time.perf_counter()
    report = task_of_model(model_dir).evaluate(model_dir, split=split, data=None, references=None, options={},
                                               limit=limit, fields=(None, None), with_predictions=False)
    report = {**report, **report.get("rouge", {})}  # a summariser's ROUGE F1s beside the other metrics
    return report, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a trained model directory (classifier, translator, summariser)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, help="score only the first N examples")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    from multihead.quantize.directory import quantize_model_dir

    work = Path(tempfile.mkdtemp(prefix="quantized-quality-"))
    print(machine(args.threads))
    rows = [("float32", Path(args.model_dir))]
    rows += [(f"int{bits}", quantize_model_dir(args.model_dir, work / f"int{bits}", bits=bits)) for bits in (8, 4)]
    results = [(name, *score(directory, args.split, args.limit)) for name, directory in rows]
    base = results[0][1]
    metrics = [metric for metric in METRICS if metric in base]
    print(f"{args.model_dir}, split {args.split}" + (f", first {args.limit}" if args.limit else ""))
    print(f"{'weights':<10}" + "".join(f"{metric:>18}" for metric in metrics) + f"{'seconds':>10}")
    for name, report, seconds in results:
        cells = "".join(f"{report[metric]:>10.4f} ({report[metric] - base[metric]:+.4f})" for metric in metrics)
        print(f"{name:<10}{cells}{seconds:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
