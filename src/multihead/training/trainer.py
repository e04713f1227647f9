"""``Trainer``: the one training loop every multihead task uses.

A task says how to compute a summed loss and how to evaluate; data comes as index batches from a
deterministic sampler plus a collate function. The trainer owns the rest: AdamW and the schedule,
accumulation, clipping, mixed precision, evaluation, early stopping, atomic ``best``/``last``
checkpoints, exact resume, the progress bar, the JSONL log and data-parallel training.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from multihead.atomic import atomic_directory, recover_directory
from multihead.errors import CheckpointError, ConfigError
from multihead.safetensors_files import load_weights_into, read_tensors
from multihead.training import distributed
from multihead.training.config import TrainingConfig
from multihead.training.optim import build_optimizer
from multihead.training.precision import resolve_precision
from multihead.training.schedules import build_scheduler
from multihead.training.state import load_training_state, save_training_state

__all__ = ["Batch", "Task", "TrainData", "TrainResult", "Trainer"]

EMA_FILE = "ema.safetensors"  # in last/: the running average of the weights (training.ema_decay)

Batch = dict[str, Tensor]


class Task(Protocol):
    """What the trainer needs to know about a task."""

    def count(self, batch: Batch) -> int:
        """Units the loss is averaged over (examples, or target tokens)."""
        ...

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """The loss *summed* over the batch's units (the trainer divides by the global count)."""
        ...

    def evaluate(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        """Metrics over ``batches`` (the model is in eval mode, under ``no_grad``)."""
        ...


class IndexSampler(Protocol):
    def batches(self, epoch: int) -> list[list[int]]: ...


@dataclass
class TrainData:
    """Training data: a sampler of index batches (deterministic per epoch) and a collate function."""

    sampler: IndexSampler
    collate: Callable[[list[int]], Batch]


@dataclass
class TrainResult:
    step: int
    best_metric: float | None
    best_step: int | None
    stopped_early: bool
    interrupted: bool
    out_of_time: bool = False
    evaluations: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Train ``model`` on ``train`` for ``task``, writing ``best/``, ``last/`` and ``metrics.jsonl`` to ``output_dir``.

    Args:
        save_files: writes the model directory's files (weights, config, tokenizer, labels) into a
            given directory; the trainer makes each save atomic and adds the training state to ``last``.
        validation: a callable returning the validation batches (called at each evaluation).
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        task: Task,
        train: TrainData,
        validation: Callable[[], Iterable[Batch]] | None,
        config: TrainingConfig,
        output_dir: str | Path,
        save_files: Callable[[Path, nn.Module], None],
    ) -> None:
        if config.patience is not None and validation is None:
            raise ConfigError("early stopping (training.patience) needs validation data")
        self.model, self.task, self.train, self.validation = model, task, train, validation
        self.config, self.output_dir, self.save_files = config, Path(output_dir), save_files
        self.device = _pick_device(config.device)
        self.precision = resolve_precision(config.precision, self.device)
        self.counters: dict[str, Any] = {"step": 0, "epoch": 0, "batch": 0, "best": None, "best_step": None,
                                         "bad_evaluations": 0, "seconds": 0.0}
        self._stop_requested = False

    # ----------------------------------------------------------------------------------------------- public
    def fit(self, *, resume: bool = False, stop_after_steps: int | None = None) -> TrainResult:
        """Train to ``config.steps`` (or early stop). ``resume`` continues from ``output_dir/last``;
        ``stop_after_steps`` stops (with ``last`` saved) once that many steps are done in total."""
        config = self.config
        distributed.init_from_environment(self.device)
        world_size, rank = distributed.world()
        if config.batch_size % (config.accumulation * world_size):
            raise ConfigError(f"training.batch_size ({config.batch_size}) must be divisible by accumulation x "
                              f"processes ({config.accumulation} x {world_size})")
        if not resume:
            torch.manual_seed(config.seed)
        model = self.model.to(self.device)
        optimizer = build_optimizer(model, lr=config.lr, weight_decay=config.weight_decay, betas=config.betas,
                                    layer_decay=config.layer_decay)
        scheduler = build_scheduler(optimizer, kind=config.schedule, warmup_steps=config.warmup_steps,
                                    total_steps=config.steps, min_ratio=config.min_lr_ratio)
        if self.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("training.precision 'fp16' needs a GPU; use 'bf16' on CPU")
        scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        average = None if config.ema_decay is None else AveragedModel(
            model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        if resume:
            scaler_state = self._restore(model, optimizer, scheduler, average)
            if scaler is not None and scaler_state:
                scaler.load_state_dict(scaler_state)
        trained = DistributedDataParallel(model) if world_size > 1 else model
        if config.compile:  # the raw model is still what is evaluated, averaged and saved
            trained = torch.compile(trained)
        result = TrainResult(self.counters["step"], self.counters["best"], self.counters["best_step"], False, False)
        log = _MetricsLog(self.output_dir, enabled=rank == 0, tensorboard=config.tensorboard)
        bar = tqdm(total=config.steps, initial=self.counters["step"], unit="step", dynamic_ncols=True,
                   disable=not config.progress or rank != 0)
        log.write({"step": self.counters["step"], "precision": self.precision, "device": str(self.device)})
        if config.precision == "auto":
            reason = ("trains faster in bf16" if self.precision == "bf16"
                      else "has no AMX" if self.device.type == "cpu" else "has no bf16")
            bar.write(f"training.precision auto: {self.precision} (this {self.device.type} {reason})")
        running_loss, running_units, started = 0.0, 0, time.perf_counter()
        clock, seconds_before = started, float(self.counters.get("seconds", 0.0))
        with self._stop_on_interrupt(), log, bar:
            for indices in self._remaining_batches():
                loss_sum, units = self._train_step(trained, optimizer, scheduler, scaler, indices)
                if average is not None:
                    average.update_parameters(model)
                running_loss, running_units = running_loss + loss_sum, running_units + units
                step = self.counters["step"]
                bar.update(1)
                if step % config.log_every == 0 or step == config.steps:
                    rate = running_units / max(time.perf_counter() - started, 1e-9)
                    mean_loss = running_loss / max(running_units, 1)
                    log.write({"step": step, "epoch": self.counters["epoch"], "loss": mean_loss,
                               "lr": max(scheduler.get_last_lr()), "units_per_second": rate})
                    bar.set_postfix(loss=f"{mean_loss:.4f}", lr=f"{max(scheduler.get_last_lr()):.2e}",
                                    units_per_s=f"{rate:,.0f}")
                    running_loss, running_units, started = 0.0, 0, time.perf_counter()
                self.counters["seconds"] = seconds_before + time.perf_counter() - clock
                out_of_time = self._out_of_time(world_size)
                finished = step >= config.steps or out_of_time
                stopping = self._stop_requested or (stop_after_steps is not None and step >= stop_after_steps)
                if step % config.eval_every == 0 or finished:
                    metrics = self._evaluate_and_keep_best(model if average is None else average.module, log, bar)
                    if metrics is not None:
                        result.evaluations.append({"step": step, **metrics})
                    patience = config.patience
                    if patience is not None and self.counters["bad_evaluations"] >= patience:
                        result.stopped_early = finished = True
                if step % config.eval_every == 0 or finished or stopping:
                    self._save_last(model, optimizer, scheduler, scaler, average)
                if finished or stopping:
                    result.interrupted = self._stop_requested
                    break
        result.out_of_time = self._out_of_time(world_size)
        result.step, result.best_metric, result.best_step = (
            self.counters["step"], self.counters["best"], self.counters["best_step"])
        return result

    # ----------------------------------------------------------------------------------------------- steps
    def _remaining_batches(self) -> Iterator[list[int]]:
        """Global index batches from the saved data position on, epoch after epoch, until the step budget."""
        while self.counters["step"] < self.config.steps:
            batches = self.train.sampler.batches(self.counters["epoch"])
            if not batches:
                raise ConfigError("the training data gives no batch (fewer examples than training.batch_size?)")
            while self.counters["batch"] < len(batches):
                self.counters["batch"] += 1
                yield batches[self.counters["batch"] - 1]
                if self.counters["step"] >= self.config.steps:
                    return
            self.counters["epoch"] += 1
            self.counters["batch"] = 0

    def _train_step(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, scaler: Any, indices: list[int]
    ) -> tuple[float, int]:
        """One optimiser step over a global batch; returns (summed loss, units) over all processes."""
        world_size, rank = distributed.world()
        chunk = len(indices) // self.config.accumulation
        micro = [indices[i * chunk:(i + 1) * chunk] for i in range(self.config.accumulation)]
        batches = [_to_device(self.train.collate(part[rank::world_size]), self.device) for part in micro]
        local_units = sum(self.task.count(batch) for batch in batches)
        (global_units,) = distributed.all_reduce_sum([float(local_units)], self.device)
        model.train()
        local_loss = 0.0
        for index, batch in enumerate(batches):
            last = index == len(batches) - 1
            sync = contextlib.nullcontext() if last or world_size == 1 else model.no_sync()  # type: ignore[operator]
            with sync:
                with self._autocast():
                    loss_sum = self.task.loss(model, batch)
                scaled = loss_sum * (world_size / global_units)  # DDP averages gradients over processes
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
            local_loss += float(loss_sum.detach())
        if scaler is not None:
            scaler.unscale_(optimizer)
        if self.config.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.config.clip_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        self.counters["step"] += 1
        (total_loss,) = distributed.all_reduce_sum([local_loss], self.device)
        return total_loss, int(global_units)

    def _out_of_time(self, world_size: int) -> bool:
        """Whether ``max_minutes`` is spent; processes agree (any one out of time stops them all)."""
        if self.config.max_minutes is None:
            return False
        spent = float(self.counters["seconds"] >= 60 * self.config.max_minutes)
        if world_size > 1:
            (spent,) = distributed.all_reduce_sum([spent], self.device)
        return spent > 0

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        precision = self.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    # ----------------------------------------------------------------------------------------------- evaluation
    def _evaluate_and_keep_best(self, model: nn.Module, log: _MetricsLog, bar: tqdm) -> dict[str, float] | None:
        if self.validation is None:
            return None
        model.eval()
        with torch.no_grad(), self._autocast():
            metrics = self.task.evaluate(model, (_to_device(b, self.device) for b in self.validation()))
        if self.config.metric not in metrics:
            raise ConfigError(f"training.metric {self.config.metric!r:.80} is not among the metrics {sorted(metrics)}")
        value = metrics[self.config.metric]
        best = self.counters["best"]
        improved = best is None or (value > best if self.config.mode == "max" else value < best)
        step = self.counters["step"]
        if improved:
            self.counters.update(best=value, best_step=step, bad_evaluations=0)
            if distributed.is_main_process():
                with atomic_directory(self.output_dir / "best") as staging:
                    self.save_files(staging, model)
        else:
            self.counters["bad_evaluations"] += 1
        distributed.barrier()
        log.write({"step": step, "validation": metrics, "best": self.counters["best"]})
        bar.write(f"step {step}: validation " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                  + (" (best so far)" if improved else ""))
        return metrics

    # ----------------------------------------------------------------------------------------------- checkpoints
    def _save_last(self, model: nn.Module, optimizer: Any, scheduler: Any, scaler: Any,
                   average: AveragedModel | None = None) -> None:
        if distributed.is_main_process():
            with atomic_directory(self.output_dir / "last") as staging:
                self.save_files(staging, model)
                if average is not None:  # the running average, for resuming; best/ holds it as the model
                    save_file({k: v.contiguous() for k, v in average.state_dict().items()}, str(staging / EMA_FILE))
                save_training_state(staging, optimizer=optimizer, scheduler=scheduler, counters=dict(self.counters),
                                    scaler_state=None if scaler is None else scaler.state_dict())
        distributed.barrier()

    def _restore(self, model: nn.Module, optimizer: Any, scheduler: Any,
                 average: AveragedModel | None = None) -> dict[str, Any] | None:
        last = self.output_dir / "last"
        recover_directory(last)
        weights = last / "model.safetensors"
        if not weights.is_file():
            raise FileNotFoundError(f"{last}: no checkpoint to resume from (expected {weights.name} there)")
        load_weights_into(model, weights, device=str(self.device),
                          what="the model this config builds (--resume needs the settings of the run it continues)")
        if average is not None:
            if not (last / EMA_FILE).is_file():
                raise FileNotFoundError(f"{last / EMA_FILE}: missing; training.ema_decay is set, so resuming needs "
                                        "the running average saved with the checkpoint")
            try:
                average.load_state_dict(read_tensors(last / EMA_FILE, device=str(self.device)))
            except RuntimeError as error:  # load_state_dict's report of missing names or other shapes
                raise CheckpointError(f"{last / EMA_FILE}: does not fit the model ({str(error)[:200]})") from error
        counters, scaler_state = load_training_state(last, optimizer=optimizer, scheduler=scheduler)
        self.counters.update(counters)
        return scaler_state

    @contextlib.contextmanager
    def _stop_on_interrupt(self) -> Iterator[None]:
        """Ctrl-C finishes the current step, saves ``last`` and returns; a second Ctrl-C aborts."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.getsignal(signal.SIGINT)

        def request_stop(signum: int, frame: Any) -> None:
            if self._stop_requested:
                raise KeyboardInterrupt
            self._stop_requested = True
            print("\nstopping after this step; `last` will be saved (Ctrl-C again to abort)", flush=True)

        signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class _MetricsLog:
    """Appends JSON lines to ``metrics.jsonl`` (and TensorBoard scalars when asked) on the main process."""

    def __init__(self, output_dir: Path, *, enabled: bool, tensorboard: bool) -> None:
        self.enabled, self.path, self.writer = enabled, output_dir / "metrics.jsonl", None
        if enabled:
            output_dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as error:
                    raise ModuleNotFoundError(
                        "training.tensorboard needs the tensorboard package: pip install tensorboard",
                        name="tensorboard") from error
                self.writer = SummaryWriter(str(output_dir / "tensorboard"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"time": time.time(), **record}) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key != "step":
                    self.writer.add_scalar(key, value, record["step"])
                elif isinstance(value, dict):
                    for name, number in value.items():
                        self.writer.add_scalar(f"{key}/{name}", number, record["step"])

    def __enter__(self) -> _MetricsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("training.device is 'cuda' but no GPU is available")
    return torch.device(name)


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
