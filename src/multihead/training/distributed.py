"""Data-parallel helpers: one process per device under ``torchrun`` (gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

__all__ = ["all_reduce_sum", "barrier", "init_from_environment", "is_main_process", "world"]


def world() -> tuple[int, int]:
    """``(world_size, rank)``: from the process group if one is running, else ``(1, 0)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


def is_main_process() -> bool:
    return world()[1] == 0


def init_from_environment(device: torch.device) -> bool:
    """Join the process group that ``torchrun`` describes in ``WORLD_SIZE``/``RANK``; False when single-process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum ``values`` over every process (identity when single-process)."""
    if world()[0] == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def barrier() -> None:
    if world()[0] > 1:
        dist.barrier()
