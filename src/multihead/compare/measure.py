"""Speed and memory of models side by side: inference latency and peak memory against sequence length, and
training throughput, on random token ids.

Timing interleaves the models (A, B, C, A, B, C, ...) round after round at a fixed number of threads and reports
medians, so every model meets the same machine load. The clock is the process's CPU time
(``time.process_time``), which other processes on a shared machine disturb far less than the wall clock; at one
thread it equals the compute the model needs. Wall-clock medians are recorded too.

Memory is the peak, during one inference forward pass, of the bytes that torch's CPU allocator holds beyond what
it held before the pass (the weights excluded): the running sum of every operator's allocations minus its frees,
in the order they ran, from ``torch.profiler`` with ``profile_memory``. It counts activations and workspaces,
not the Python interpreter or the allocator's cached pages.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from multihead.errors import ConfigError

__all__ = ["Measured", "TaskInputs", "count_parameters", "interleaved_medians", "measure_models", "peak_forward_bytes"]

Call = Callable[[], object]


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters, a tied matrix counted once."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclass(frozen=True)
class TaskInputs:
    """How to feed a model of a task: random inputs of ``(batch, length)`` and a loss on its output.

    Attributes:
        kind: ``classification`` (``model(ids, mask=)`` -> ``(B, C)``), ``translation`` (``model(source,
            target)`` -> ``(B, T, V)``, source and target both ``length`` long) or ``language-model``
            (``model(ids)`` -> ``(B, T, V)``).
        vocab_size, pad_id: ids are drawn from the vocabulary without the padding id.
    """

    kind: str
    vocab_size: int
    pad_id: int | None

    def __post_init__(self) -> None:
        if self.kind not in ("classification", "translation", "language-model"):
            raise ConfigError(f"kind must be classification, translation or language-model, got {self.kind!r:.80}")

    def ids(self, batch: int, length: int, generator: torch.Generator) -> Tensor:
        ids = torch.randint(0, self.vocab_size, (batch, length), generator=generator)  # (B, T)
        if self.pad_id is not None:
            ids = ids.masked_fill(ids == self.pad_id, (self.pad_id + 1) % self.vocab_size)
        return ids

    def call(self, model: nn.Module, batch: int, length: int, *, seed: int = 0) -> Callable[[], Tensor]:
        """A closure running one forward pass on fixed random inputs."""
        generator = torch.Generator().manual_seed(seed)
        ids = self.ids(batch, length, generator)
        if self.kind == "classification":
            mask = torch.ones_like(ids, dtype=torch.bool)
            return lambda: model(ids, mask=mask)
        if self.kind == "translation":
            target = self.ids(batch, length, generator)
            return lambda: model(ids, target)
        return lambda: model(ids)

    def tokens(self, batch: int, length: int) -> int:
        """Tokens a batch carries (source plus target for translation)."""
        return batch * length * (2 if self.kind == "translation" else 1)

    def train_step(self, model: nn.Module, batch: int, length: int, *, seed: int = 0) -> Callable[[], None]:
        """A closure running forward, cross-entropy on random targets, backward and an AdamW step."""
        forward = self.call(model, batch, length, seed=seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        generator = torch.Generator().manual_seed(seed + 1)

        def step() -> None:
            logits = forward()  # (B, C) or (B, T, V)
            targets = torch.randint(0, logits.shape[-1], logits.shape[:-1], generator=generator)
            loss = F.cross_entropy(logits.float().flatten(0, -2), targets.flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return step


def interleaved_medians(calls: dict[str, Call], *, rounds: int) -> dict[str, dict[str, float]]:
    """Run every call once per round, in turn; the median CPU and wall seconds of each (after one warm-up)."""
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    wall: dict[str, list[float]] = {name: [] for name in calls}
    for call in calls.values():
        call()  # warm-up: allocator, lazy initialisation
    for _ in range(rounds):
        for name, call in calls.items():
            started_cpu, started_wall = time.process_time(), time.perf_counter()
            call()
            cpu[name].append(time.process_time() - started_cpu)
            wall[name].append(time.perf_counter() - started_wall)
    return {name: {"cpu_seconds": statistics.median(cpu[name]), "wall_seconds": statistics.median(wall[name])}
            for name in calls}


def peak_forward_bytes(call: Call) -> int:
    """Peak bytes held by torch's CPU allocator during ``call`` beyond those held before it."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        call()
    changes = []
    for event in profiler.events():
        usage = event.cpu_memory_usage if event.name == "[memory]" else event.self_cpu_memory_usage
        if usage:
            changes.append((event.time_range.start, usage))
    held = peak = 0
    for _, usage in sorted(changes, key=lambda change: change[0]):
        held += usage
        peak = max(peak, held)
    return peak


@dataclass
class Measured:
    """Per model: ``latency[length]`` and ``memory[length]`` (bytes), training tokens per CPU second."""

    parameters: dict[str, int]
    latency: dict[str, dict[int, dict[str, float]]]
    memory: dict[str, dict[int, int]]
    train_tokens_per_second: dict[str, float]
    train_wall_tokens_per_second: dict[str, float]


def measure_models(models: dict[str, tuple[nn.Module, TaskInputs]], *, lengths: Sequence[int], batch_size: int,
                   rounds: int, train_batch: int, train_length: int, threads: int = 1,
                   log: Callable[[str], None] = print) -> Measured:
    """Latency and memory at each length (inference, eval mode, no gradients) and training throughput."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        parameters = {name: count_parameters(model) for name, (model, _) in models.items()}
        latency: dict[str, dict[int, dict[str, float]]] = {name: {} for name in models}
        memory: dict[str, dict[int, int]] = {name: {} for name in models}
        with torch.no_grad():
            for model, _ in models.values():
                model.eval()
            for length in lengths:
                calls = {name: inputs.call(model, batch_size, length) for name, (model, inputs) in models.items()}
                for name, medians in interleaved_medians(calls, rounds=rounds).items():
                    latency[name][length] = medians
                for name, call in calls.items():
                    memory[name][length] = peak_forward_bytes(call)
                log(f"length {length}: " + ", ".join(
                    f"{name} {latency[name][length]['cpu_seconds'] * 1e3:.1f} ms" for name in models))
        steps = {}
        for name, (model, inputs) in models.items():
            model.train()
            steps[name] = inputs.train_step(model, train_batch, train_length)
        timed = interleaved_medians(steps, rounds=rounds)
        tokens = {name: inputs.tokens(train_batch, train_length) for name, (_, inputs) in models.items()}
        return Measured(parameters=parameters, latency=latency, memory=memory,
                        train_tokens_per_second={name: tokens[name] / timed[name]["cpu_seconds"] for name in models},
                        train_wall_tokens_per_second={name: tokens[name] / timed[name]["wall_seconds"]
                                                      for name in models})
    finally:
        torch.set_num_threads(previous)
