"""Side-by-side attention benchmark on CPU, fp32: multihead vs torch.nn vs hand-written SDPA.

Run: ``python benchmarks/attention.py`` (``--quick`` for a short smoke run). Prints one table of median
times and the ratios the project's goals are stated in, then peak memory of long forwards, each size
measured in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead import MultiHeadAttention, compat

D_MODEL, HEADS = 512, 8
SHAPES = [(8, 128), (4, 512), (1, 2048)]


class HandWrittenSDPA(nn.Module):
    """What one writes by hand: a packed projection, ``scaled_dot_product_attention``, an output projection."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.n_heads, width // self.n_heads)  # (B, T, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, Dh)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, T, Dh)
        return self.out(out.transpose(1, 2).reshape(batch, length, width))  # (B, T, D)


def contenders(batch: int, length: int) -> dict[str, tuple[nn.Module, Callable[[nn.Module, Tensor], Tensor], Tensor]]:
    """name -> (module, call, input); torch.nn and compat at their defaults take (T, B, D) input."""
    batch_first = torch.randn(batch, length, D_MODEL)
    seq_first = batch_first.transpose(0, 1).contiguous()  # (T, B, D)
    return {
        "multihead": (MultiHeadAttention(D_MODEL, HEADS), lambda m, x: m(x)[0], batch_first),
        "torch.nn default": (nn.MultiheadAttention(D_MODEL, HEADS), lambda m, x: m(x, x, x)[0], seq_first),
        "torch.nn no-weights": (
            nn.MultiheadAttention(D_MODEL, HEADS), lambda m, x: m(x, x, x, need_weights=False)[0], seq_first,
        ),
        "hand SDPA": (HandWrittenSDPA(D_MODEL, HEADS), lambda m, x: m(x), batch_first),
        "compat default": (compat.MultiheadAttention(D_MODEL, HEADS), lambda m, x: m(x, x, x)[0], seq_first),
    }


def time_all(batch: int, length: int, backward: bool, rounds: int, repeats: int) -> dict[str, float]:
    """Median milliseconds per call; contenders alternate within each round so drift hits all alike."""
    entries = contenders(batch, length)
    samples: dict[str, list[float]] = {name: [] for name in entries}

    def run(name: str) -> None:
        module, call, x = entries[name]
        if backward:
            x = x.detach().requires_grad_()
            call(module, x).sum().backward()
        else:
            with torch.no_grad():
                call(module, x)

    for name, (module, _, _) in entries.items():
        module.train(backward)
        run(name)  # warm-up
    for _ in range(rounds):
        for name in entries:
            start = time.perf_counter()
            for _ in range(repeats):
                run(name)
            samples[name].append((time.perf_counter() - start) / repeats * 1e3)
    return {name: statistics.median(times) for name, times in samples.items()}


def time_autocast(batch: int, length: int, rounds: int, repeats: int) -> tuple[float, float]:
    """Median forward milliseconds of ``MultiHeadAttention`` in fp32 and under CPU bf16 autocast."""
    module = MultiHeadAttention(D_MODEL, HEADS).eval()
    x = torch.randn(batch, length, D_MODEL)
    samples: dict[bool, list[float]] = {False: [], True: []}
    with torch.no_grad():
        for autocast in (False, True) * (rounds + 1):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                start = time.perf_counter()
                for _ in range(repeats):
                    module(x)
                samples[autocast].append((time.perf_counter() - start) / repeats * 1e3)
    return statistics.median(samples[False][1:]), statistics.median(samples[True][1:])


def peak_memory_child(length: int, kind: str) -> None:
    """Print the peak resident-memory growth (MiB) of one forward; runs in a process of its own.

    A short warm-up forward loads the kernels; then the kernel's high-water mark (VmHWM) is reset
    through ``/proc/self/clear_refs`` and read again after the measured forward.
    """
    torch.manual_seed(0)
    if kind == "multihead":
        module: nn.Module = MultiHeadAttention(D_MODEL, HEADS).eval()
        call: Callable[[Tensor], object] = lambda x: module(x)  # noqa: E731
    else:  # torch.nn at need_weights=True takes the explicit path that materialises (B, H, T, T)
        module = nn.MultiheadAttention(D_MODEL, HEADS, batch_first=True).eval()
        call = lambda x: module(x, x, x)  # noqa: E731
    x = torch.randn(1, length, D_MODEL)
    with torch.no_grad():
        call(torch.randn(1, 64, D_MODEL))
        resident = _status_mib("VmRSS")
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        call(x)
    print(json.dumps({"peak_growth_mib": _status_mib("VmHWM") - resident}))


def _status_mib(field: str) -> float:
    """A ``kB`` field of ``/proc/self/status`` in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not found in /proc/self/status (Linux only)")


def peak_memory(length: int, kind: str) -> float:
    output = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(length), kind], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_growth_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few rounds: a smoke run, not a measurement")
    parser.add_argument("--memory-child", nargs=2, metavar=("LENGTH", "KIND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        peak_memory_child(int(args.memory_child[0]), args.memory_child[1])
        return
    torch.manual_seed(0)
    rounds, repeats = (2, 1) if args.quick else (7, 3)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, fp32, d_model {D_MODEL}, {HEADS} heads, median of {rounds} rounds")
    names = list(contenders(1, 1))
    header = f"{'(B, T)':>10} {'pass':>8} " + " ".join(f"{name:>20}" for name in names)
    header += f" {'nn/ours':>8} {'ours/hand':>9} {'nn/compat':>9}"
    print(header)
    for batch, length in SHAPES:
        for backward in (False, True):
            ms = time_all(batch, length, backward, rounds, repeats)
            row = f"{(batch, length)!s:>10} {'fwd+bwd' if backward else 'fwd':>8} "
            row += " ".join(f"{ms[name]:>17.2f} ms" for name in names)
            row += f" {ms['torch.nn default'] / ms['multihead']:>7.2f}x"
            row += f" {ms['multihead'] / ms['hand SDPA']:>8.3f}x"
            row += f" {ms['torch.nn default'] / ms['compat default']:>8.2f}x"
            print(row, flush=True)
    print("\nnn/ours: speed-up over torch.nn.MultiheadAttention at its defaults (goal >= 1.25x)")
    print("ours/hand: time relative to hand-written SDPA (goal <= 1.05x)")
    print("nn/compat: compat.MultiheadAttention vs torch.nn, both at defaults (goal >= 1.0x, i.e. no slower)\n")

    print("opt-in bf16 autocast (AVX512-BF16 or AMX where the CPU has them), forward, multihead only; "
          "not part of the fp32 goals:")
    for batch, length in SHAPES:
        fp32_ms, bf16_ms = time_autocast(batch, length, rounds, repeats)
        print(f"  {(batch, length)!s:>10}: fp32 {fp32_ms:8.2f} ms, bf16 autocast {bf16_ms:8.2f} ms, "
              f"speed-up {fp32_ms / bf16_ms:.2f}x")
    print()
    print("peak memory growth of one forward, B=1, no weights (multihead) vs torch.nn with weights:")
    lengths = [4096, 8192]
    for kind in ("multihead", "torch.nn weights"):
        peaks = [peak_memory(length, "multihead" if kind == "multihead" else "nn") for length in lengths]
        print(f"  {kind:>18}: T=4096 {peaks[0]:8.1f} MiB, T=8192 {peaks[1]:8.1f} MiB, "
              f"ratio {peaks[1] / max(peaks[0], 1e-9):.2f} (linear = 2, quadratic = 4)")


if __name__ == "__main__":
    main()
