"""Reading and writing the files of a Hugging Face model directory: JSON configs and weights.

Weights come from ``model.safetensors`` (or the shards named by ``model.safetensors.index.json``) or,
failing that, from ``pytorch_model.bin`` read with ``torch.load(..., weights_only=True)``, which
unpickles tensors only. Nothing here imports ``transformers`` or runs code from the directory.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from multihead.errors import CheckpointError
from multihead.safetensors_files import check_finite, read_tensors

__all__ = ["is_hf_directory", "read_hf_config", "read_hf_weights", "read_json", "write_hf_weights"]

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_FILE = "pytorch_model.bin"


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; errors (``CheckpointError``) name the file and line."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from error
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
    except RecursionError as error:
        raise CheckpointError(f"{path}: JSON nested too deeply; expected a config object") from error
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(values).__name__}")
    return values


def is_hf_directory(directory: str | Path) -> bool:
    """Whether ``directory`` holds a Hugging Face ``config.json`` (one with a ``model_type``)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        return False
    try:
        values = read_json(path)
    except ValueError:
        return False
    return "model_type" in values and values.get("format") != "multihead"


def read_hf_config(directory: Path) -> dict[str, Any]:
    """The ``config.json`` of a Hugging Face directory; it must name a ``model_type``."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; a Hugging Face model directory holds {CONFIG_FILE}")
    values = read_json(path)
    if not isinstance(values.get("model_type"), str):
        raise CheckpointError(f"{path}: no \"model_type\"; expected a Hugging Face config (BERT, GPT-2 or Marian)")
    return values


def read_hf_weights(directory: Path) -> dict[str, Tensor]:
    """Every tensor of the directory by name, on the CPU, in its stored dtype; floating-point values finite.

    Raises:
        CheckpointError: a damaged file, a pickle that holds more than tensors, or NaN or infinite values.
    """
    if (directory / SAFETENSORS_FILE).is_file():
        return read_tensors(directory / SAFETENSORS_FILE)
    if (directory / SAFETENSORS_INDEX).is_file():
        index = read_json(directory / SAFETENSORS_INDEX)
        shards = sorted(set((index.get("weight_map") or {}).values()))
        if not shards:
            raise CheckpointError(f"{directory / SAFETENSORS_INDEX}: no \"weight_map\"; expected the shards' file "
                                  "names")
        tensors: dict[str, Tensor] = {}
        for shard in shards:
            shard_path = directory / shard
            if not shard_path.is_file() or shard_path.resolve().parent != directory.resolve():
                raise FileNotFoundError(f"{shard_path}: shard named by {SAFETENSORS_INDEX} not found in {directory}")
            tensors.update(read_tensors(shard_path))
        return tensors
    if (directory / PICKLE_FILE).is_file():
        try:
            state = torch.load(directory / PICKLE_FILE, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:  # weights_only refused something that is not a tensor
            raise CheckpointError(f"{directory / PICKLE_FILE}: refused: the pickle holds more than tensors (it could "
                                  "run code when loaded); expected plain weights; convert it to model.safetensors "
                                  "with a tool you trust") from error
        except (RuntimeError, EOFError, OSError) as error:  # torch.load's reports of a damaged file
            raise CheckpointError(f"{directory / PICKLE_FILE}: not a readable PyTorch weights file "
                                  f"({str(error).splitlines()[0][:160] if str(error) else type(error).__name__})"
                                  ) from error
        if not isinstance(state, dict) or not all(isinstance(value, Tensor) for value in state.values()):
            raise CheckpointError(f"{directory / PICKLE_FILE}: expected a mapping of tensor names to tensors")
        check_finite(state, where=directory / PICKLE_FILE)
        return dict(state)
    raise FileNotFoundError(
        f"{directory}: no weights; expected {SAFETENSORS_FILE}, {SAFETENSORS_INDEX} or {PICKLE_FILE}"
    )


def write_hf_weights(directory: Path, tensors: Mapping[str, Tensor]) -> None:
    """``model.safetensors`` with contiguous, unshared copies of ``tensors``."""
    save_file({name: tensor.detach().cpu().contiguous().clone() for name, tensor in tensors.items()},
              str(directory / SAFETENSORS_FILE), metadata={"format": "pt"})
