"""The ``multihead`` command: a thin shell over the Python API."""

from __future__ import annotations

import argparse
import sys
import time

import multihead

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from multihead.demo import run_reverse_demo

    print("multihead demo: a 2-layer encoder-decoder learns to reverse digit strings (no data needed)")
    start = time.perf_counter()
    result = run_reverse_demo(steps=args.steps, seed=args.seed, progress=not args.quiet)
    print(f"final training loss {result.final_loss:.4f}; held-out sequence accuracy "
          f"{result.sequence_accuracy:.1%} on 200 new strings; {time.perf_counter() - start:.0f} s")
    for source, prediction in result.examples:
        print(f"  {source:>12} -> {prediction}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="multihead", description="Transformers built around one multi-head attention module."
    )
    parser.add_argument("--version", action="version", version=f"multihead {multihead.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="train a small model on a built-in task and show what it learned")
    demo.add_argument("--steps", type=int, default=1000, help="training steps (default 1000)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
