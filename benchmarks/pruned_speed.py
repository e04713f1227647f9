"""Speed of head-pruned models against their unpruned original, side by side, on the original's data.

Run: ``python benchmarks/pruned_speed.py MODEL_DIR PRUNED_DIR [PRUNED_DIR ...] --split validation``
(pruned directories come from ``multihead heads MODEL_DIR --out OUT --prune F``, in ``OUT/pruned``).

A classifier's rate is real (not padding) tokens classified per second, in batches of 64; a translation
model's rate is tokens generated per second (greedy by default, EOS included, batches of 32 sentences).
One thread, CPU time (steady on a shared machine), the models interleaved in every round with the order
alternating; the median over rounds is printed with the range.
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import torch

from multihead.inspect.importance import attention_modules
from multihead.inspect.pruning_report import load_head_study, measure_speed
from multihead.model_dir import load_model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="the unpruned model directory")
    parser.add_argument("pruned", nargs="+", help="pruned model directories of the same model")
    parser.add_argument("--split", default="validation", help="split of the model's data set (default validation)")
    parser.add_argument("--limit", type=int, help="only the first N examples")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument("--num-beams", type=int, default=1, help="beam size for translation (default 1)")
    args = parser.parse_args()
    study = load_head_study(args.model_dir, splits=[args.split], num_beams=args.num_beams, limit=args.limit)
    models = {"unpruned": study.model}
    for directory in args.pruned:
        models[Path(directory).as_posix()] = load_model_dir(directory).model
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread, CPU time, "
          f"{args.rounds} rounds, split {args.split}" + (f" (first {args.limit})" if args.limit else ""))
    speeds = measure_speed(study, models, args.split, rounds=args.rounds)
    base = speeds["unpruned"]["tokens_per_s"]
    for name, speed in speeds.items():
        heads = sum(module.n_heads for module in attention_modules(models[name]).values())
        parameters = sum(p.numel() for p in models[name].parameters())
        print(f"{name:<40} {heads:>3} heads {parameters:>11,} parameters {speed['tokens_per_s']:>10,.0f} tokens/s "
              f"({speed['min']:,.0f} to {speed['max']:,.0f})  {speed['tokens_per_s'] / base:.2f}x")


if __name__ == "__main__":
    main()
