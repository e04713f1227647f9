"""Training throughput of ``multihead.SequenceClassifier`` vs Hugging Face ``BertForSequenceClassification``, CPU.

Run: ``python benchmarks/train_classifier.py`` (``--quick`` for a short smoke run; ``--layers --width --heads
--ffn --vocab --batch --length --dropout`` change the size; on a busy shared machine ``--threads 1 --clock cpu``
gives steadier ratios). Both models are built at the same size and run side
by side in one process, their steps interleaved in rounds (the order flips every round) so that drift on a
shared machine hits both alike; medians over rounds are reported.

Same size: layers, width, heads, FFN width, vocabulary, maximum length (learned positions), exact (erf) GELU,
post-norm residual blocks as in BERT, biases everywhere, LayerNorm eps 1e-12, dropout ``--dropout`` on both
(default 0.1: residual, attention weights and classifier input, BERT's defaults; like BERT, no dropout on the
feed-forward hidden units: ``activation_dropout=0``) and a 2-class
head. Hugging Face runs ``attn_implementation="sdpa"``. BERT also has parts ours does not, left in place: token
type embeddings, a LayerNorm on the embeddings and a pooler (dense + tanh on the first token) before the
classifier; they are a small share of the compute (one ``(B, T, D)`` LayerNorm and a ``(B, D) x (D, D)`` matmul).
Ours runs its position-wise work (projections, feed-forward, norms) on the real tokens of a padded batch only
(``multihead.packing``); BERT computes padded positions too. That is the main source of the difference.

Training: tokens/s = real (non-pad) tokens per second of forward + cross-entropy (mean) + backward +
``torch.optim.AdamW(lr=1e-4)`` step, on batches of realistic variable lengths (uniform in ``length/4 .. length``,
padded to the batch's longest, with an attention mask); both models get the very same batches. fp32 and bf16
autocast (weights and optimizer stay fp32). Inference: sentences/s of a forward in eval mode under ``no_grad``.
With dropout > 0, PyTorch's CPU SDPA takes its math path in training for both models (its fused CPU kernel has no
dropout); ``--dropout 0`` times the fused kernel.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from multihead import SequenceClassifier, TransformerConfig

Batch = tuple[Tensor, Tensor, Tensor]  # ids (B, T) long, mask (B, T) bool True = real token, labels (B,) long
PRECISIONS = ("fp32", "bf16 autocast")


@dataclass(frozen=True)
class Size:
    layers: int = 4
    width: int = 256
    heads: int = 4
    ffn: int = 1024
    vocab: int = 8000
    length: int = 128
    batch: int = 32
    dropout: float = 0.1


QUICK = Size(layers=2, width=64, heads=2, ffn=256, vocab=1000, length=32, batch=4)


def build_ours(size: Size) -> nn.Module:
    config = TransformerConfig(
        vocab_size=size.vocab, d_model=size.width, n_heads=size.heads, d_ff=size.ffn, n_layers=size.layers,
        activation="gelu", norm_first=False, eps=1e-12, positions="learned", max_length=size.length,
        dropout=size.dropout, attention_dropout=size.dropout, activation_dropout=0.0, bias=True, pad_id=0,
    )
    return SequenceClassifier(config, n_classes=2, pooling="cls")


def build_hf(size: Size) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=size.vocab, hidden_size=size.width, num_hidden_layers=size.layers, num_attention_heads=size.heads,
        intermediate_size=size.ffn, hidden_act="gelu", max_position_embeddings=size.length, layer_norm_eps=1e-12,
        hidden_dropout_prob=size.dropout, attention_probs_dropout_prob=size.dropout, num_labels=2, pad_token_id=0,
    )
    return BertForSequenceClassification._from_config(config, attn_implementation="sdpa")


def make_batches(size: Size, count: int, *, seed: int = 0) -> list[Batch]:
    """``count`` batches of lengths uniform in ``length/4 .. length``, padded (id 0) to each batch's longest."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        lengths = torch.randint(max(1, size.length // 4), size.length + 1, (size.batch,), generator=generator)
        longest = int(lengths.max())
        mask = torch.arange(longest)[None, :] < lengths[:, None]  # (B, T)
        ids = torch.randint(1, size.vocab, (size.batch, longest), generator=generator).masked_fill(~mask, 0)
        labels = torch.randint(0, 2, (size.batch,), generator=generator)
        batches.append((ids, mask, labels))
    return batches


def loss_ours(model: nn.Module, batch: Batch) -> Tensor:
    ids, mask, labels = batch
    return F.cross_entropy(model(ids, mask=mask), labels)


def loss_hf(model: nn.Module, batch: Batch) -> Tensor:
    ids, mask, labels = batch
    return model(input_ids=ids, attention_mask=mask.long(), labels=labels).loss


def logits_ours(model: nn.Module, batch: Batch) -> Tensor:
    return model(batch[0], mask=batch[1])


def logits_hf(model: nn.Module, batch: Batch) -> Tensor:
    return model(input_ids=batch[0], attention_mask=batch[1].long()).logits


@dataclass
class Contender:
    model: nn.Module
    loss: Callable[[nn.Module, Batch], Tensor]
    logits: Callable[[nn.Module, Batch], Tensor]
    optimizer: torch.optim.Optimizer


def contenders(size: Size) -> dict[str, Contender]:
    torch.manual_seed(0)
    ours, hf = build_ours(size), build_hf(size)
    return {
        "ours": Contender(ours, loss_ours, logits_ours, torch.optim.AdamW(ours.parameters(), lr=1e-4)),
        "HF": Contender(hf, loss_hf, logits_hf, torch.optim.AdamW(hf.parameters(), lr=1e-4)),
    }


def train_step(entry: Contender, batch: Batch, bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = entry.loss(entry.model, batch)
    entry.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    entry.optimizer.step()


def infer_step(entry: Contender, batch: Batch, bf16: bool) -> None:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        entry.logits(entry.model, batch)


def throughput(
    entries: dict[str, Contender], batches: list[Batch], *, train: bool, bf16: bool, warmup: int, rounds: int,
    steps: int, per_sentence: bool, clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Per-round (real tokens or sentences) per second; contenders alternate, order flipped each round.

    Round ``r`` feeds every contender the same ``steps`` batches, so both see identical work.
    """
    step = train_step if train else infer_step
    for entry in entries.values():
        entry.model.train(train)
        for i in range(warmup):
            step(entry, batches[i % len(batches)], bf16)
    samples: dict[str, list[float]] = {name: [] for name in entries}
    names = list(entries)
    for r in range(rounds):
        chunk = [batches[(r * steps + i) % len(batches)] for i in range(steps)]
        work = sum(len(b[0]) if per_sentence else int(b[1].sum()) for b in chunk)
        for name in names if r % 2 == 0 else names[::-1]:
            start = clock()
            for batch in chunk:
                step(entries[name], batch, bf16)
            samples[name].append(work / (clock() - start))
    return samples


def table_row(precision: str, samples: dict[str, list[float]], digits: int) -> str:
    """Medians of both, then the median and range of the per-round ratios (paired rounds cancel slow drift)."""
    ratios = sorted(ours / hf for ours, hf in zip(samples["ours"], samples["HF"], strict=True))
    ours, hf = statistics.median(samples["ours"]), statistics.median(samples["HF"])
    return (f"{precision:>14} {ours:>12,.{digits}f} {hf:>12,.{digits}f} {statistics.median(ratios):>7.2f}x "
            f"{ratios[0]:>6.2f}-{ratios[-1]:.2f}x")


def cpu_name() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` where there is one, else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 2 rounds: a smoke run, not a measurement")
    default = Size()
    for field in ("layers", "width", "heads", "ffn", "vocab", "batch", "length"):
        parser.add_argument(f"--{field}", type=int, default=None, help=f"default {getattr(default, field)}")
    parser.add_argument("--dropout", type=float, default=None, help=f"on both models, default {default.dropout}")
    parser.add_argument("--rounds", type=int, default=None, help="default 7 (2 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="steps per round and contender, default 3 (1 quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu = process CPU time: steadier on a busy shared machine, meaningful with --threads 1")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    base = QUICK if args.quick else default
    chosen = {name: value for name, value in vars(args).items() if name in Size.__dataclass_fields__}
    size = Size(**{name: getattr(base, name) if value is None else value for name, value in chosen.items()})
    rounds = args.rounds or (2 if args.quick else 7)
    steps = args.steps or (1 if args.quick else 3)
    warmup = 1 if args.quick else 3

    entries = contenders(size)
    batches = make_batches(size, max(rounds * steps, warmup))
    real = sum(int(b[1].sum()) for b in batches) / sum(b[1].numel() for b in batches)
    n_params = {name: sum(p.numel() for p in e.model.parameters()) for name, e in entries.items()}
    print(f"torch {torch.__version__}, {cpu_name()}, "
          f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"size: {size.layers} layers, width {size.width}, {size.heads} heads, FFN {size.ffn}, vocab {size.vocab}, "
          f"batch {size.batch}, lengths {max(1, size.length // 4)}..{size.length} ({real:.0%} real tokens), "
          f"dropout {size.dropout} on both, post-norm, exact GELU, LayerNorm eps 1e-12")
    print(f"HF attention: {entries['HF'].model.config._attn_implementation}; parameters: ours {n_params['ours']:,}, "
          f"HF {n_params['HF']:,}")
    print("BERT adds token-type embeddings, an embedding LayerNorm and a pooler (dense + tanh); neither drops the "
          "FFN hidden units; ours skips padded positions outside attention")
    print(f"{rounds} rounds x {steps} steps, contenders interleaved, medians, {args.clock} clock\n")

    print("training, forward + backward + AdamW step, real tokens/s:")
    print(f"{'precision':>14} {'ours tok/s':>12} {'HF tok/s':>12} {'ours/HF':>8} {'rounds range':>12}")
    for precision in PRECISIONS:
        samples = throughput(entries, batches, train=True, bf16=precision != "fp32", warmup=warmup, rounds=rounds,
                             steps=steps, per_sentence=False, clock=clock)
        print(table_row(precision, samples, 0), flush=True)
    print("goal: ours/HF >= 1.2x (median of the per-round ratios)\n")

    print("inference, eval forward under no_grad, sentences/s:")
    print(f"{'precision':>14} {'ours sent/s':>12} {'HF sent/s':>12} {'ours/HF':>8} {'rounds range':>12}")
    for precision in PRECISIONS:
        samples = throughput(entries, batches, train=False, bf16=precision != "fp32", warmup=warmup, rounds=rounds,
                             steps=steps, per_sentence=True, clock=clock)
        print(table_row(precision, samples, 1), flush=True)


if __name__ == "__main__":
    main()
