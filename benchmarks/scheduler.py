"""How aggregate decoding speed grows with concurrent requests in the continuous-batching ``Scheduler``.

For each concurrency ``c`` the same ``c`` requests (random prompts, eos off so each writes all its tokens) are
submitted at once to a ``Scheduler`` with ``c`` slots, and, for reference, decoded as one static batch by
``generate`` (the ceiling: no joining, no per-row masks). The runs of every level are interleaved in one
process: level by level, scheduler and ``generate`` alternate, median of ``--repeats``.

    python benchmarks/scheduler.py [--quick] [--threads N] [--repeats R] [--levels 1,2,4,8,16]

Random-init fp32 ``DecoderLM`` (the ``decode.py`` size: d_model 512, 8 heads, 6 layers, d_ff 2048,
vocabulary 8192, rope), prompts of 16-48 tokens, 64 new tokens each, CPU, ``torch.inference_mode``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from decode import machine
from multihead import DecoderLM, TransformerConfig
from multihead.generation import GenerationConfig, generate
from multihead.generation.scheduler import Scheduler

FULL = TransformerConfig(vocab_size=8192, d_model=512, n_heads=8, n_layers=6, d_ff=2048, dropout=0.0,
                         max_length=512, positions="rope")
QUICK = TransformerConfig(vocab_size=128, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0, max_length=128,
                          positions="rope")


def prompts(count: int, lengths: tuple[int, int], vocab: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab) for _ in range(rng.randint(*lengths))] for _ in range(count)]


def timed(run: object) -> tuple[float, float]:
    """Wall and CPU seconds (every thread of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()  # type: ignore[operator]
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a tiny model, a few seconds (smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levels", default="1,2,4,8,16", help="concurrent requests to time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    levels = [int(level) for level in args.levels.split(",")]
    config = QUICK if args.quick else FULL
    new_tokens = 8 if args.quick else 64
    torch.manual_seed(0)
    model = DecoderLM(config).eval()
    generation = GenerationConfig(max_new_tokens=new_tokens)
    print(f"machine: {machine()}")
    print(f"DecoderLM d_model {config.d_model}, {config.n_heads} heads, {config.n_layers} layers, vocab "
          f"{config.vocab_size}, rope, fp32, random init; prompts of 16-48 tokens, {new_tokens} new tokens each, "
          f"eos off; median of {args.repeats}")
    print("tok/s by wall time | by CPU time (every thread of this process), each side's median")
    print(f"{'requests':>8} {'scheduler tok/s':>16} {'vs 1 request':>14} {'generate tok/s':>19} "
          f"{'scheduler/generate':>19}")
    base: tuple[float, float] | None = None
    for level in levels:
        batch = prompts(level, (16, 48), config.vocab_size, seed=level)
        with Scheduler(model, slots=level, max_queue=level) as scheduler:
            def through_scheduler() -> None:
                handles = [scheduler.submit(prompt, generation) for prompt in batch]  # noqa: B023
                for handle in handles:
                    handle.result(timeout=600)

            def static_batch() -> None:
                with torch.inference_mode():
                    generate(model, batch, generation, batch_size=level)  # noqa: B023

            through_scheduler()  # warm-up, both sides
            static_batch()
            times: dict[str, list[tuple[float, float]]] = {"scheduler": [], "generate": []}
            for _ in range(args.repeats):  # interleaved
                times["scheduler"].append(timed(through_scheduler))
                times["generate"].append(timed(static_batch))
        tokens = level * new_tokens
        scheduled = tuple(tokens / statistics.median(t[i] for t in times["scheduler"]) for i in (0, 1))
        static = tuple(tokens / statistics.median(t[i] for t in times["generate"]) for i in (0, 1))
        base = base or scheduled
        print(f"{level:>8} {scheduled[0]:>7.1f} |{scheduled[1]:>7.1f} {scheduled[0] / base[0]:>5.2f}x |"
              f"{scheduled[1] / base[1]:>5.2f}x {static[0]:>11.1f} |{static[1]:>7.1f} "
              f"{scheduled[0] / static[0]:>8.2f}x |{scheduled[1] / static[1]:>6.2f}x")


if __name__ == "__main__":
    main()
