"""Deployment speed on the CPU, side by side in one run: a classifier on onnxruntime against PyTorch eager at
batch 1, and ``torch.compile`` against eager for decoding (``GenerationConfig(compile=True)``) and for training
(``training.compile``): compile time, steady-state speed, and after how much work compiling pays.

Run: ``python benchmarks/deploy_speed.py [--classifier MODEL_DIR] [--threads 1] [--only onnx,decode,train]``
(``--quick``: tiny models, a seconds-long smoke run).

- ``onnx``: the classifier (a trained model directory, or the MR recipe's sizes with random weights) exported
  once with ``multihead export``; sentences of 8-40 tokens one at a time, PyTorch (``torch.inference_mode``) and
  onnxruntime alternating sentence by sentence so that both meet the same load; sentences/s and the ratio.
- ``decode``: greedy decoding of a ``DecoderLM`` (width 512, 6 layers, 8 heads, vocabulary 8192), 8-token prompts,
  128 new tokens with eos off, batch 1 and 8, eager against compiled (inductor); the first compiled call's
  extra time is the compile cost, and break-even is that cost over the per-token saving.
- ``train``: training steps of the MR classifier's sizes (batches of 32, lengths 8-64, bucketed, random data),
  eager against ``training.compile``, through the trainer (AdamW, clipping); the compiled run's time includes
  its compiling, so the two rates say how many steps it takes to pay.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from multihead import DecoderLM, SequenceClassifier, TransformerConfig
from multihead.generation import GenerationConfig, generate


def machine(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = " ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"machine: {cpu}, {os.cpu_count()} CPUs, {threads} threads; torch {torch.__version__}; load average "
            f"{load}")


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (inductor compiles C++ in worker processes)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def classifier_dir(args: argparse.Namespace, work: Path) -> Path:
    """The classifier to time: ``--classifier``, or the MR recipe's sizes with random weights."""
    if args.classifier:
        return Path(args.classifier)
    from multihead.model_dir import save_model_dir

    sizes = {"vocab_size": 16000, "d_model": 128, "n_heads": 4, "n_layers": 1, "d_ff": 256, "max_length": 64}
    if args.quick:
        sizes = {"vocab_size": 200, "d_model": 32, "n_heads": 2, "n_layers": 1, "d_ff": 64, "max_length": 64}
    model = SequenceClassifier(TransformerConfig(**sizes, dropout=0.0, pad_id=0), n_classes=2).eval()
    return save_model_dir(work / "classifier", model=model)


def onnx_batch_one(args: argparse.Namespace, work: Path) -> None:
    from multihead.export import export_onnx, load_onnx
    from multihead.model_dir import load_model_dir

    model_dir = classifier_dir(args, work)
    model = load_model_dir(model_dir).model
    started = cpu_seconds()
    graphs = load_onnx(export_onnx(model_dir, work / "classifier-onnx"), threads=args.threads)
    print(f"exported in {cpu_seconds() - started:.1f} s of CPU")
    generator = torch.Generator().manual_seed(0)
    count = 40 if args.quick else 400
    lengths = torch.randint(8, 41, (count,), generator=generator).tolist()
    sentences = [torch.randint(5, model.config.vocab_size, (1, n), generator=generator) for n in lengths]
    masks = [torch.ones(ids.shape, dtype=torch.bool) for ids in sentences]
    eager, onnx = 0.0, 0.0
    with torch.inference_mode():
        for ids, mask in zip(sentences[:10], masks[:10], strict=True):  # warm-up
            model(ids, mask=mask)
            graphs(ids, mask)
        worst = 0.0
        for ids, mask in zip(sentences, masks, strict=True):
            begin = time.perf_counter()
            expected = model(ids, mask=mask)
            middle = time.perf_counter()
            (got,) = graphs(ids, mask)
            end = time.perf_counter()
            eager, onnx = eager + middle - begin, onnx + end - middle
            worst = max(worst, float((got - expected).abs().max()))
    print(f"classifier, batch 1, {count} sentences of 8-40 tokens, {sum(p.numel() for p in model.parameters()):,} "
          f"parameters, interleaved sentence by sentence")
    print(f"  PyTorch eager {count / eager:9.1f} sentences/s   onnxruntime {count / onnx:9.1f} sentences/s   "
          f"onnx/eager {eager / onnx:.2f}x   max |difference| {worst:.1e}")


def seconds(run: Callable[[], object]) -> float:
    begin = time.perf_counter()
    run()
    return time.perf_counter() - begin


def decode(args: argparse.Namespace) -> None:
    sizes = {"vocab_size": 8192, "d_model": 512, "n_heads": 8, "n_layers": 6, "d_ff": 2048, "max_length": 512}
    new_tokens = 128
    if args.quick:
        sizes, new_tokens = {"vocab_size": 128, "d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64,
                             "max_length": 64}, 16
    torch.manual_seed(0)
    model = DecoderLM(TransformerConfig(**sizes, dropout=0.0)).eval()
    print(f"DecoderLM {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, greedy, prompt 8, "
          f"{new_tokens} new tokens, eos off")
    for batch in (1, 8):
        prompts = torch.randint(0, sizes["vocab_size"], (batch, 8)).tolist()
        config = GenerationConfig(max_new_tokens=new_tokens)
        generate(model, prompts, config)  # warm-up
        started, cpu = time.perf_counter(), cpu_seconds()
        first = generate(model, prompts, config.replace(compile=True))
        first_call, compile_cpu = time.perf_counter() - started, cpu_seconds() - cpu
        same = [h.tokens for hs in first for h in hs] == [h.tokens for hs in generate(model, prompts, config)
                                                         for h in hs]
        eager_s, compiled_s = [], []
        for _ in range(args.repeats):  # interleaved
            eager_s.append(seconds(partial(generate, model, prompts, config)))
            compiled_s.append(seconds(partial(generate, model, prompts, config.replace(compile=True))))
        eager, compiled = statistics.median(eager_s), statistics.median(compiled_s)
        tokens = batch * new_tokens
        saving = (eager - compiled) / tokens  # seconds saved per generated token
        compile_cost = first_call - compiled
        pays = f"after {compile_cost / saving:,.0f} tokens" if saving > 0 else "never (compiled is not faster)"
        print(f"  batch {batch}: eager {tokens / eager:8.1f} tok/s  compiled {tokens / compiled:8.1f} tok/s  "
              f"compiled/eager {eager / compiled:.2f}x  first call {first_call:.1f} s ({compile_cpu:.1f} s CPU)  "
              f"same tokens {same}  pays {pays}")


def train_steps(args: argparse.Namespace, work: Path) -> None:
    from multihead.data import BucketBatchSampler
    from multihead.model_dir import write_model_files
    from multihead.tasks.classification import ClassificationTask, EncodedExamples
    from multihead.training import TrainData, Trainer, TrainingConfig

    steps = 12 if args.quick else 60
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(8, 65, (steps * 32,), generator=generator).tolist()
    examples = EncodedExamples(ids=[torch.randint(5, 200, (n,), generator=generator).tolist() for n in lengths],
                               labels=torch.randint(0, 2, (len(lengths),), generator=generator).tolist())
    width = 32 if args.quick else 128
    rates: dict[tuple[bool, int], float] = {}
    for run in (1, 2):  # the second run of each mode reuses the first one's graphs: the steady state
        for compiled in (False, True):
            torch.manual_seed(0)
            model: nn.Module = SequenceClassifier(TransformerConfig(
                vocab_size=200, d_model=width, n_heads=4, n_layers=1, d_ff=2 * width, max_length=64, dropout=0.1,
                pad_id=0), n_classes=2)
            config = TrainingConfig(steps=steps, batch_size=32, eval_every=steps, log_every=steps, progress=False,
                                    compile=compiled, device="cpu")
            sampler = BucketBatchSampler(lengths, batch_size=32, seed=0, drop_last=True)
            trainer = Trainer(model=model, task=ClassificationTask(label_names=["a", "b"]),
                              train=TrainData(sampler=sampler, collate=partial(examples.collate, pad_id=0)),
                              validation=None, config=config, output_dir=work / f"train-{compiled}-{run}",
                              save_files=lambda directory, trained: write_model_files(directory, model=trained))
            started, cpu = time.perf_counter(), cpu_seconds()
            trainer.fit()
            seconds = time.perf_counter() - started
            rates[compiled, run] = steps / seconds
            what = "first run, compiling" if compiled and run == 1 else ("steady" if run == 2 else "first run")
            print(f"  classifier training, {'compiled' if compiled else 'eager'} ({what}): {steps} steps of 32 "
                  f"sentences (8-64 tokens, bucketed) in {seconds:.1f} s ({cpu_seconds() - cpu:.1f} s CPU), "
                  f"{steps / seconds:.2f} steps/s")
    steady, compile_cost = rates[True, 2] / rates[False, 2], steps / rates[True, 1] - steps / rates[True, 2]
    saving = 1 / rates[False, 2] - 1 / rates[True, 2]  # seconds saved per step
    pays = f"after {compile_cost / saving:,.0f} steps" if saving > 0 else "never (compiled is not faster)"
    print(f"  steady compiled/eager {steady:.2f}x; compiling cost {compile_cost:.1f} s; pays {pays}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classifier", help="a classifier model directory (default: MR sizes, random weights)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="comma-separated: onnx, decode, train (default all)")
    parser.add_argument("--quick", action="store_true", help="tiny models: a smoke run")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    parts = ("onnx", "decode", "train") if args.only is None else tuple(args.only.split(","))
    work = Path(tempfile.mkdtemp(prefix="deploy-speed-"))
    print(machine(args.threads))
    started = time.perf_counter()
    if "onnx" in parts:
        onnx_batch_one(args, work)
    if "decode" in parts:
        decode(args)
    if "train" in parts:
        train_steps(args, work)
    print(f"total {time.perf_counter() - started:.0f} s; {machine(args.threads).split('; ')[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
