"""Reading safetensors files so that every defect is one :class:`~multihead.errors.CheckpointError`.

A truncated, empty or garbled file, a tensor of another shape or kind (an integer tensor where the model holds
floats), a missing or unexpected name, and NaN or infinite values all raise before a model is used, and every
message names the file and, where there is one, the tensor. The header is read (and checked) before any tensor.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model
from torch import Tensor, nn

from multihead.errors import CheckpointError

__all__ = ["check_finite", "load_weights_into", "read_tensors", "tensor_specs"]

_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


def _damaged(path: Path, error: Exception) -> CheckpointError:
    return CheckpointError(f"{path}: not a readable safetensors file ({str(error)[:160]}); expected a complete file "
                           "as written by safetensors (re-save or re-download it)")


def tensor_specs(path: str | Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Each tensor's safetensors dtype (``"F32"``, ``"I64"``, ...) and shape, read from the header only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; expected a safetensors weights file")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return {name: (handle.get_slice(name).get_dtype(), tuple(handle.get_slice(name).get_shape()))
                    for name in handle.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError) as error:
        raise _damaged(path, error) from error


def read_tensors(path: str | Path, *, device: str = "cpu") -> dict[str, Tensor]:
    """Every tensor of a safetensors file, checked to be finite where it is floating point."""
    path = Path(path)
    tensor_specs(path)  # a damaged file fails here, with its name
    try:
        tensors = load_file(str(path), device=device)
    except (SafetensorError, OSError, ValueError) as error:
        raise _damaged(path, error) from error
    check_finite(tensors, where=path)
    return tensors


def check_finite(tensors: Mapping[str, Tensor], *, where: str | Path) -> None:
    """Raise ``CheckpointError`` naming the first floating-point tensor that holds NaN or an infinity."""
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and tensor.numel() and not bool(torch.isfinite(tensor).all()):
            bad = "NaN" if bool(torch.isnan(tensor).any()) else "infinite"
            raise CheckpointError(f"{where}: tensor {name!r} holds {bad} values; the weights are damaged (or "
                                  "training diverged), so the model would give meaningless results")


def _kind(dtype: torch.dtype) -> str:
    return "floating-point" if dtype.is_floating_point else str(dtype).removeprefix("torch.")


def load_weights_into(model: nn.Module, path: str | Path, *, device: str = "cpu", what: str = "the model") -> None:
    """Load ``path`` into ``model`` in place, after checking every name, shape and dtype against it.

    Floating-point tensors may come in any floating-point dtype (they are cast as ``load_state_dict`` does);
    other tensors must match exactly. Values must be finite.

    Args:
        what: how messages name the model (e.g. ``"SequenceClassifier of config.json"``).

    Raises:
        CheckpointError: a damaged file, or weights that do not fit ``model``.
        FileNotFoundError: ``path`` is missing.
    """
    path = Path(path)
    specs = tensor_specs(path)
    expected = model.state_dict()
    for name, (dtype_name, shape) in specs.items():
        if name not in expected:
            continue
        target = expected[name]
        if shape != tuple(target.shape):
            raise CheckpointError(f"{path}: tensor {name!r} has shape {list(shape)}; {what} expects "
                                  f"{list(target.shape)} (the weights belong to a model of another size)")
        dtype = _DTYPES.get(dtype_name)
        fits = dtype is not None and (dtype == target.dtype or (dtype.is_floating_point and target.is_floating_point()))
        if not fits:
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {dtype_name}; {what} expects "
                                  f"{_kind(target.dtype)} values ({str(target.dtype).removeprefix('torch.')})")
    try:
        missing, unexpected = load_model(model, str(path), strict=False, device=device)
    except (SafetensorError, OSError) as error:
        raise _damaged(path, error) from error
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit {what}: missing {_names(missing)}, unexpected "
                              f"{_names(unexpected)}")
    state = model.state_dict()
    check_finite({name: state[name] for name in specs if name in state}, where=path)


def _names(names: Collection[str]) -> str:
    names = sorted(names)
    shown = ", ".join(names[:5])
    return f"[{shown}{f', ... ({len(names)} in all)' if len(names) > 5 else ''}]"
