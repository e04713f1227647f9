"""Decoding benchmark on CPU, fp32, random-init models: the KV cache against recomputing the prefix.

Run: ``python benchmarks/decode.py`` (``--quick`` for a seconds-long smoke run with tiny models).

1. Greedy decoding of a ``DecoderLM`` (d_model 512, 8 heads, 6 layers, vocabulary 8192), 256 new
   tokens with eos off, at batch 1 and 16: tokens/s with the cache and without it, and their ratio.
2. Beam-4 "translation" with a Multi30k-sized ``EncoderDecoder`` (3+3 layers, d_model 256, 4 heads,
   shared vocabulary 8000): sentences/s over 32 sources of 16-24 tokens, 24 new tokens each (eos off,
   so every sentence runs to the end), with and without the cache, and their ratio.

Uncached greedy decoding at 256 tokens runs a forward over the whole prefix at every step, which at
batch 16 takes many minutes on two cores. So, by default, only batch 1 is timed as real uncached
``generate`` runs; for larger batches the uncached step (a forward over ``(B, L)`` ids, log-softmax,
argmax) is timed at five prefix lengths ``L`` and summed over all 256 steps by linear interpolation.
The integration leaves out ``generate``'s own per-step work, so it can only flatter the uncached side;
at batch 1 both are measured and the table prints how close they are. ``--exact`` (or
``--real-up-to B``) times real uncached runs at larger batches too. Everything else is a real
``generate`` call: warmed up, repeated, median taken.

On a machine shared with other jobs, ``--threads 1`` avoids the stalls of oversubscribed thread pools.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from multihead import DecoderLM, EncoderDecoder, TransformerConfig
from multihead.generation import GenerationConfig, generate


@dataclass(frozen=True, kw_only=True)
class Sizes:
    """What one benchmark run decodes."""

    lm: TransformerConfig
    batches: tuple[int, ...]
    prompt_length: int
    new_tokens: int
    seq2seq: TransformerConfig
    sentences: int
    source_lengths: tuple[int, int]
    seq2seq_new_tokens: int
    beams: int


FULL = Sizes(
    lm=TransformerConfig(vocab_size=8192, d_model=512, n_heads=8, n_layers=6, d_ff=2048, dropout=0.0, max_length=512),
    batches=(1, 16), prompt_length=8, new_tokens=256,
    seq2seq=TransformerConfig(vocab_size=8000, d_model=256, n_heads=4, n_layers=3, d_ff=1024, dropout=0.0,
                              max_length=128),
    sentences=32, source_lengths=(16, 24), seq2seq_new_tokens=24, beams=4,
)
REAL_RUN_BUDGET_S = 20.0  # real uncached runs repeat only while they have taken less than this
QUICK = Sizes(
    lm=TransformerConfig(vocab_size=128, d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0, max_length=64),
    batches=(1, 4), prompt_length=4, new_tokens=12,
    seq2seq=TransformerConfig(vocab_size=128, d_model=32, n_heads=4, n_layers=1, d_ff=64, dropout=0.0, max_length=64),
    sentences=4, source_lengths=(3, 6), seq2seq_new_tokens=5, beams=2,
)


def machine() -> str:
    """CPU model, threads, torch version and load average, in one line."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"python {platform.python_version()}, load average {load}")


def median_seconds(run: Callable[[], object], repeats: int, *, budget: float | None = None) -> float:
    """Median wall time of ``repeats`` calls (the caller warms up first); with a ``budget`` in seconds,
    no new call starts once the calls so far have taken that long (a long run is its own average)."""
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
        if budget is not None and sum(times) >= budget:
            break
    return statistics.median(times)


def random_inputs(count: int, lengths: tuple[int, int], vocab: int, seed: int) -> list[list[int]]:
    """``count`` random token lists with lengths in ``lengths`` (inclusive), avoiding ids 0-2."""
    generator = torch.Generator().manual_seed(seed)
    sizes = torch.randint(lengths[0], lengths[1] + 1, (count,), generator=generator).tolist()
    return [torch.randint(3, vocab, (size,), generator=generator).tolist() for size in sizes]


def integrated_uncached_seconds(
    model: DecoderLM, batch: int, prompt_length: int, new_tokens: int, repeats: int, points: int = 5
) -> float:
    """Seconds of uncached greedy decoding, from the step cost timed at ``points`` prefix lengths.

    Step ``t`` of uncached decoding runs the model over ``prompt_length + t`` tokens per row; its cost is
    timed at evenly spaced lengths, interpolated linearly and summed over ``t = 0 .. new_tokens - 1``.
    """
    first, last = prompt_length, prompt_length + new_tokens - 1
    lengths = sorted({round(first + (last - first) * index / (points - 1)) for index in range(points)})
    vocab = model.config.vocab_size
    costs = []
    with torch.inference_mode():
        for length in lengths:
            ids = torch.randint(3, vocab, (batch, length))

            def step(ids: torch.Tensor = ids) -> None:
                model(ids)[:, -1].float().log_softmax(dim=-1).argmax(dim=-1).tolist()

            step()  # warm-up
            costs.append(median_seconds(step, repeats))
    total = 0.0
    for length in range(first, last + 1):
        right = next(index for index, point in enumerate(lengths) if point >= length)
        if lengths[right] == length or right == 0:
            total += costs[right]
            continue
        left = right - 1
        share = (length - lengths[left]) / (lengths[right] - lengths[left])
        total += costs[left] + share * (costs[right] - costs[left])
    return total


def bench_lm(sizes: Sizes, repeats: int, real_up_to: int) -> list[dict[str, float]]:
    """Greedy tokens/s with and without the cache at each batch size.

    Without the cache, batches up to ``real_up_to`` are timed as real ``generate`` runs (and also
    integrated, to check the integration); larger ones are integrated only.
    """
    torch.manual_seed(0)
    model = DecoderLM(sizes.lm).eval()
    rows = []
    for batch in sizes.batches:
        prompts = random_inputs(batch, (sizes.prompt_length, sizes.prompt_length), sizes.lm.vocab_size, seed=batch)
        config = GenerationConfig(max_new_tokens=sizes.new_tokens, eos_id=None)
        generate(model, prompts, config.replace(max_new_tokens=4))  # warm-up
        cached = median_seconds(lambda prompts=prompts, config=config: generate(model, prompts, config), repeats)
        integrated = integrated_uncached_seconds(model, batch, sizes.prompt_length, sizes.new_tokens, repeats)
        row = {"batch": batch, "cached_seconds": cached, "integrated_seconds": integrated}
        uncached = integrated
        if batch <= real_up_to:
            uncached_config = config.replace(use_cache=False)
            uncached = median_seconds(
                lambda prompts=prompts, config=uncached_config: generate(model, prompts, config), repeats,
                budget=REAL_RUN_BUDGET_S,
            )
            row["real_seconds"] = uncached
        tokens = batch * sizes.new_tokens
        row.update(cached=tokens / cached, uncached=tokens / uncached, ratio=uncached / cached)
        rows.append(row)
    return rows


def bench_seq2seq(sizes: Sizes, repeats: int) -> dict[str, float]:
    """Beam-search sentences/s over random sources, with and without the cache."""
    torch.manual_seed(0)
    model = EncoderDecoder(sizes.seq2seq).eval()
    sources = random_inputs(sizes.sentences, sizes.source_lengths, sizes.seq2seq.vocab_size, seed=7)
    config = GenerationConfig(max_new_tokens=sizes.seq2seq_new_tokens, num_beams=sizes.beams, bos_id=1, eos_id=None)
    generate(model, sources[:2], config.replace(max_new_tokens=2))  # warm-up
    cached = median_seconds(lambda: generate(model, sources, config, batch_size=sizes.sentences), repeats)
    uncached_config = config.replace(use_cache=False)
    uncached = median_seconds(lambda: generate(model, sources, uncached_config, batch_size=sizes.sentences), repeats)
    return {"cached": sizes.sentences / cached, "uncached": sizes.sentences / uncached, "ratio": uncached / cached}


def describe(config: TransformerConfig, *, seq2seq: bool = False) -> str:
    layers = f"{config.n_layers}+{config.decoder_layers}" if seq2seq else str(config.n_layers)
    return (f"d_model {config.d_model}, {config.n_heads} heads, {layers} layers, d_ff {config.feed_forward_width}, "
            f"vocab {config.vocab_size}, {config.positions} positions")


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and few tokens (a smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median)")
    parser.add_argument("--exact", action="store_true", help="time real uncached LM runs at every batch size")
    parser.add_argument("--real-up-to", type=int, default=1,
                        help="largest batch whose uncached LM decoding is timed as real runs (default 1)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    print(f"machine: {machine()}")
    print(f"fp32, random init, torch.inference_mode, median of {args.repeats} timed runs after a warm-up")

    real_up_to = max(sizes.batches) if args.exact else args.real_up_to
    lm_rows = bench_lm(sizes, args.repeats, real_up_to)
    print(f"\nDecoderLM greedy ({describe(sizes.lm)}), prompt {sizes.prompt_length}, "
          f"{sizes.new_tokens} new tokens, eos off")
    print(f"{'batch':>5} {'cached tok/s':>13} {'no-cache tok/s':>15} {'cached/no-cache':>16}  no-cache timing")
    for row in lm_rows:
        if "real_seconds" in row:
            how = (f"real generate runs (the step integration gives "
                   f"{row['integrated_seconds'] / row['real_seconds']:.2f} of their time)")
        else:
            how = "integrated from timed steps"
        print(f"{int(row['batch']):>5} {row['cached']:>13.1f} {row['uncached']:>15.1f} {row['ratio']:>15.1f}x  {how}")

    s2s = bench_seq2seq(sizes, args.repeats)
    print(f"\nEncoderDecoder beam-{sizes.beams} ({describe(sizes.seq2seq, seq2seq=True)}), {sizes.sentences} sources "
          f"of {sizes.source_lengths[0]}-{sizes.source_lengths[1]} tokens, {sizes.seq2seq_new_tokens} new tokens, "
          "eos off, one batch")
    print(f"{'':>5} {'cached sent/s':>13} {'no-cache sent/s':>15} {'cached/no-cache':>16}")
    print(f"{'':>5} {s2s['cached']:>13.2f} {s2s['uncached']:>15.2f} {s2s['ratio']:>15.1f}x")
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at the end "
          f"{' '.join(f'{value:.2f}' for value in os.getloadavg())}")
    return {"lm": lm_rows, "seq2seq": s2s}


if __name__ == "__main__":
    main()
