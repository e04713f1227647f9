"""The checks ``benchmarks/gpu.sh`` runs on a lent GPU, and on a CPU with ``--dry-run`` (tiny sizes, CUDA parts
skipped), printing one table.

1. ``parity``: the attention core (``multihead.functional.scaled_dot_product``) against a float64 reference and
   against ``F.scaled_dot_product_attention`` under each fused backend (flash: causal, no mask; memory-efficient:
   a padding mask with fully masked query rows), bf16 and fp32, forward and backward. Fully masked rows must give
   zeros and finite gradients (SDPA alone gives NaN there).
2. ``attention``: forward + backward time of the core against ``F.scaled_dot_product_attention`` at
   (B, T, H, D) = (8, 2048, 16, 64) and (1, 16384, 16, 128), bf16, causal, and with a padding mask.
3. ``nanogpt``: the tinyshakespeare character model in nanoGPT's GPU configuration (6 layers, 6 heads, width 384,
   context 256, batch 64, 5,000 iterations, dropout 0.2, lr 1e-3 cosine to 1e-4, bf16) to its validation loss;
   nanoGPT reports 1.4697.
4. ``multi30k``: the larger Multi30k recipe (Transformer-base sizes: 6+6 layers, width 512, 8 heads, FFN 2048)
   for a fixed time budget, then test BLEU with beam 4.

Run: ``bash benchmarks/gpu.sh`` (all), ``--only parity,attention``, ``--multi30k-minutes 8``, ``--dry-run``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from multihead.functional import scaled_dot_product

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("parity", "attention", "nanogpt", "multi30k")
NANOGPT = ["model.n_layers=6", "model.n_heads=6", "model.d_model=384", "model.d_ff=1536", "model.max_length=256",
           "model.dropout=0.2", "training.batch_size=64", "training.steps=5000", "training.lr=1e-3",
           "training.warmup_steps=100", "training.min_lr_ratio=0.1", "training.eval_every=500",
           "training.precision=bf16"]
NANOGPT_DRY = ["model.n_layers=1", "model.n_heads=2", "model.d_model=32", "model.d_ff=64", "model.max_length=32",
               "training.batch_size=8", "training.steps=6", "training.warmup_steps=2", "training.eval_every=3",
               "training.precision=fp32"]
MULTI30K = ["model.d_model=512", "model.n_heads=8", "model.n_layers=6", "model.n_decoder_layers=6",
            "model.d_ff=2048", "training.steps=100000", "training.lr=7e-4", "training.warmup_steps=1000",
            "training.eval_every=500", "training.precision=bf16"]
MULTI30K_DRY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.n_decoder_layers=1",
                "model.d_ff=64", "tokenizer.kind=word", "tokenizer.vocab_size=300", "training.steps=4",
                "training.warmup_steps=1",
                "training.eval_every=2", "training.precision=fp32", "training.batch_size=16"]


@dataclass
class Row:
    check: str
    result: str
    ok: bool | None  # None: not run (a skip, with the reason in result)
    seconds: float = 0.0


def machine(device: torch.device) -> str:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "no GPU (dry run on the CPU)"
    load = " ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{gpu}; {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} "
            f"threads; torch {torch.__version__} (CUDA {torch.version.cuda}); load average {load}")


def reference_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
    """Attention written out in float64; a query row with no key allowed gives zeros. ``(B, H, T, D)``."""
    q, k, v = q.double(), k.double(), v.double()
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, Tq, Tk)
    allowed = torch.ones(scores.shape, dtype=torch.bool, device=scores.device)
    if causal:
        allowed &= torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
    if mask is not None:
        allowed &= mask
    weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1).nan_to_num(0.0)
    return weights @ v


def parity(device: torch.device) -> list[Row]:
    """Ours against float64 and SDPA under each backend, forward and backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows = []
    generator = torch.Generator(device="cpu").manual_seed(0)
    batch, heads, length, width = 2, 4, 128, 64
    lengths = torch.tensor([length, length // 2])
    padding = (torch.arange(length)[None, :] < lengths[:, None])[:, None, None, :]  # (B, 1, 1, T)
    padding = padding & (torch.arange(length)[:, None] != 5)[None, None]  # query row 5 sees no key: (B, 1, T, T)
    cases = [("flash", SDPBackend.FLASH_ATTENTION, True, None), ("efficient", SDPBackend.EFFICIENT_ATTENTION, False,
             padding), ("math", SDPBackend.MATH, False, padding)]
    for name, backend, causal, mask in cases:
        for dtype in (torch.bfloat16, torch.float32):
            label = f"parity: {name}, {str(dtype).removeprefix('torch.')}, " + ("causal" if causal else
                                                                                 "padding + fully masked rows")
            if backend == SDPBackend.FLASH_ATTENTION and dtype == torch.float32:
                continue  # flash runs half precision only
            if device.type != "cuda" and backend != SDPBackend.MATH:
                rows.append(Row(label, "needs CUDA", None))
                continue
            started = time.perf_counter()
            q, k, v = (torch.randn(batch, heads, length, width, generator=generator).to(device, dtype)
                       .requires_grad_() for _ in range(3))
            m = None if mask is None else mask.to(device)
            try:
                with sdpa_kernel([backend]):
                    ours, _ = scaled_dot_product(q, k, v, mask=m, is_causal=causal)
                    ours.float().square().sum().backward()
                    theirs = F.scaled_dot_product_attention(q.detach(), k.detach(), v.detach(), attn_mask=m,
                                                            is_causal=causal)
            except RuntimeError as error:  # no kernel of this backend for these inputs
                rows.append(Row(label, f"error: {str(error).splitlines()[0][:80]}", False))
                continue
            grads = [t.grad for t in (q, k, v)]
            q64, k64, v64 = (t.detach().double().requires_grad_() for t in (q, k, v))
            expected = reference_attention(q64, k64, v64, m, causal)
            expected.square().sum().backward()
            tolerance = 3e-2 if dtype == torch.bfloat16 else 1e-5
            error = (ours.double() - expected).abs().max().item()
            grad_error = max((g.double() - r.grad).abs().max().item() / max(r.grad.abs().max().item(), 1.0)
                             for g, r in zip(grads, (q64, k64, v64), strict=True))
            seen = torch.ones(ours.shape[:-1], dtype=torch.bool, device=device) if m is None else \
                m.expand(batch, heads, length, length).any(dim=-1)  # (B, H, T) rows with a key
            sdpa_error = (ours - theirs)[seen].abs().max().item()
            finite = all(bool(torch.isfinite(g).all()) for g in grads) and bool(torch.isfinite(ours).all())
            zeros = bool((ours[~seen] == 0).all())
            ok = error <= tolerance and grad_error <= 10 * tolerance and finite and zeros and sdpa_error <= tolerance
            rows.append(Row(label, f"|ours-f64| {error:.1e}, grads {grad_error:.1e}, |ours-SDPA| {sdpa_error:.1e} "
                                   f"(tol {tolerance:g}); masked rows zero: {zeros}, finite: {finite}", ok,
                            time.perf_counter() - started))
    return rows


def time_call(run: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Median seconds of ``run`` after two warm-up calls."""
    times = []
    for index in range(repeats + 2):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= 2:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def _ours(q: Tensor, k: Tensor, v: Tensor, *, attn_mask: Tensor | None, is_causal: bool) -> Tensor:
    return scaled_dot_product(q, k, v, mask=attn_mask, is_causal=is_causal)[0]


def _forward_backward(attend: Callable[..., Tensor], q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None,
                      causal: bool) -> None:
    attend(q, k, v, attn_mask=mask, is_causal=causal).sum().backward()


def attention_speed(device: torch.device, dry: bool) -> list[Row]:
    rows = []
    shapes = [(2, 64, 2, 16), (1, 128, 2, 32)] if dry else [(8, 2048, 16, 64), (1, 16384, 16, 128)]
    dtype = torch.float32 if dry else torch.bfloat16
    for batch, length, heads, width in shapes:
        for masked in (False, True):
            q, k, v = (torch.randn(batch, heads, length, width, device=device, dtype=dtype, requires_grad=True)
                       for _ in range(3))
            mask = None
            if masked:  # the last tenth of every row's keys is padding
                mask = (torch.arange(length, device=device) < length - length // 10)[None, None, None, :]
            ours = partial(_forward_backward, _ours, q, k, v, mask, not masked)
            theirs = partial(_forward_backward, F.scaled_dot_product_attention, q, k, v, mask, not masked)
            started = time.perf_counter()
            mine, sdpa = time_call(ours, device, 5), time_call(theirs, device, 5)
            label = f"attention fwd+bwd (B,T,H,D)=({batch},{length},{heads},{width}) " + (
                "padding mask" if masked else "causal")
            rows.append(Row(label, f"ours {mine * 1e3:.2f} ms, SDPA {sdpa * 1e3:.2f} ms: {sdpa / mine:.2f}x", True,
                            time.perf_counter() - started))
    return rows


def train(recipe: str, overrides: list[str], output_dir: Path) -> tuple[object, float]:
    from multihead.experiment import load_experiment
    from multihead.tasks.registry import get_task

    config = load_experiment(ROOT / "configs" / recipe, [*overrides, f"output_dir={output_dir}",
                                                          "training.progress=false"])
    started = time.perf_counter()
    result = get_task(config.task).train(config, resume=False, test=False, log=lambda line: None)
    return result, time.perf_counter() - started


def missing(name: str) -> str | None:
    from multihead.data import data_root

    try:
        return None if (data_root() / name).is_dir() else f"../shared/data/{name} is absent (set MULTIHEAD_DATA)"
    except FileNotFoundError as error:
        return str(error).splitlines()[0]


def nanogpt(device: torch.device, dry: bool, out: Path) -> list[Row]:
    label = "nanoGPT char LM (6x384, ctx 256, 5,000 iterations)" if not dry else "char LM, dry run (tiny, 6 steps)"
    if (reason := missing("tinyshakespeare")) is not None:
        return [Row(label, f"skipped: {reason}", None)]
    result, seconds = train("lm-tinyshakespeare.yaml", [*(NANOGPT_DRY if dry else NANOGPT),
                                                         f"training.device={device.type}"], out / "nanogpt")
    loss = result.best_validation  # type: ignore[attr-defined]
    return [Row(label, f"validation loss {loss:.4f} nats/char at step {result.best_step} "  # type: ignore[attr-defined]
                       "(nanoGPT: 1.4697)", loss is not None and math.isfinite(loss), seconds)]


def multi30k(device: torch.device, dry: bool, out: Path, minutes: float) -> list[Row]:
    label = f"Multi30k larger recipe ({minutes:g} min budget)" if not dry else "Multi30k, dry run (tiny, 4 steps)"
    if (reason := missing("multi30k")) is not None:
        return [Row(label, f"skipped: {reason}", None)]
    from multihead.tasks.seq2seq_eval import evaluate_seq2seq

    budget = [] if dry else [f"training.max_minutes={minutes}"]
    result, seconds = train("translate-multi30k.yaml", [*(MULTI30K_DRY if dry else MULTI30K), *budget,
                                                        f"training.device={device.type}"], out / "multi30k")
    report = evaluate_seq2seq(out / "multi30k" / "best", split="test", decoding={"num_beams": 4},
                              limit=16 if dry else None)
    return [Row(label, f"{result.best_step} steps; test BLEU {report['bleu']:.2f}, chrF {report['chrf']:.2f} "  # type: ignore[attr-defined]
                       f"(beam 4, {report['sentences']} sentences, {report['seconds']:.0f} s)", True, seconds)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="on the CPU, tiny sizes, CUDA parts skipped")
    parser.add_argument("--only", help=f"comma-separated stages out of {', '.join(STAGES)} (default all)")
    parser.add_argument("--out", help="where the training runs go (default runs/gpu; a temporary folder in a dry "
                        "run)")
    parser.add_argument("--multi30k-minutes", type=float, default=8.0, help="training budget (default 8)")
    args = parser.parse_args(argv)
    stages = STAGES if args.only is None else tuple(args.only.split(","))
    if unknown := sorted(set(stages) - set(STAGES)):
        parser.error(f"unknown stages {unknown}; choose from {', '.join(STAGES)}")
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu.sh: no CUDA device; run with --dry-run to check the script on the CPU", file=sys.stderr)
        return 2
    device = torch.device("cpu" if args.dry_run else "cuda")
    out = Path(args.out or (tempfile.mkdtemp(prefix="gpu-dry-") if args.dry_run else ROOT / "runs" / "gpu"))
    print(machine(device), flush=True)
    rows: list[Row] = []
    for stage in stages:
        print(f"running {stage} ...", flush=True)
        if stage == "parity":
            rows += parity(device)
        elif stage == "attention":
            rows += attention_speed(device, args.dry_run)
        elif stage == "nanogpt":
            rows += nanogpt(device, args.dry_run, out)
        else:
            rows += multi30k(device, args.dry_run, out, args.multi30k_minutes)
    width = max(len(row.check) for row in rows)
    print(f"\n{'check':<{width}}  {'status':<6}  {'seconds':>8}  result")
    for row in rows:
        status = "skip" if row.ok is None else ("ok" if row.ok else "FAIL")
        print(f"{row.check:<{width}}  {status:<6}  {row.seconds:>8.1f}  {row.result}")
    return 1 if any(row.ok is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
