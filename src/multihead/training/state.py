"""Training state for exact resume, stored without pickle: tensors in safetensors, the rest in JSON.

Covers the optimiser (``state`` tensors and ``param_groups``), the scheduler, the torch RNG states and
the trainer's own counters (step, data position, best metric, patience).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from multihead.errors import CheckpointError
from multihead.safetensors_files import read_tensors

__all__ = ["load_training_state", "save_training_state"]

TENSORS_FILE, JSON_FILE = "training_state.safetensors", "training_state.json"


def _optimizer_to_flat(optimizer: Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into named tensors and a JSON-ready rest."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars.setdefault(str(index), {})[name] = value
    groups = [
        {key: list(value) if isinstance(value, tuple) else value for key, value in group.items()}
        for group in state_dict["param_groups"]
    ]
    return tensors, {"param_groups": groups, "scalars": scalars, "tensor_params": sorted(state_dict["state"])}


def _optimizer_from_flat(optimizer: Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    groups = [
        {key: tuple(value) if key == "betas" else value for key, value in group.items()}
        for group in meta["param_groups"]
    ]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_training_state(
    directory: Path,
    *,
    optimizer: Optimizer,
    scheduler: LRScheduler,
    counters: dict[str, Any],
    scaler_state: dict[str, Any] | None = None,
) -> None:
    """Write ``training_state.safetensors`` and ``training_state.json`` into ``directory``."""
    tensors, optimizer_meta = _optimizer_to_flat(optimizer)
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for device, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{device}"] = rng
    save_file(tensors, str(directory / TENSORS_FILE))
    meta = {
        "optimizer": optimizer_meta,
        "scheduler": scheduler.state_dict(),
        "counters": counters,
        "scaler": scaler_state,
    }
    (directory / JSON_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def load_training_state(
    directory: Path, *, optimizer: Optimizer, scheduler: LRScheduler, restore_rng: bool = True
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Restore optimiser, scheduler and RNG from ``directory``; return ``(counters, scaler_state)``."""
    tensors_path, json_path = directory / TENSORS_FILE, directory / JSON_FILE
    for path in (tensors_path, json_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; a resumable checkpoint holds {TENSORS_FILE} and {JSON_FILE}")
    try:
        meta = json.loads(json_path.read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{json_path}: line {error.lineno}: not valid JSON ({error.msg})") from error
    except (UnicodeDecodeError, RecursionError) as error:
        raise CheckpointError(f"{json_path}: not the JSON training state we write ({str(error)[:80]})") from error
    tensors = read_tensors(tensors_path)
    _optimizer_from_flat(optimizer, tensors, meta["optimizer"])
    scheduler.load_state_dict(meta["scheduler"])
    if restore_rng:
        torch.set_rng_state(tensors["rng.cpu"])
        if torch.cuda.is_available():
            cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
            if cuda_states:
                torch.cuda.set_rng_state_all(cuda_states)
    return meta["counters"], meta.get("scaler")
