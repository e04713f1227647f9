"""Moving a checkpoint's tensors into a model: ``TensorSource`` hands them out by name and keeps account,
``load_mapped`` copies a mapped state dict into a model after checking names and shapes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatch

import torch
from torch import Tensor, nn

from multihead.errors import CheckpointError

__all__ = ["TensorSource", "load_mapped"]


class TensorSource:
    """Hands out a checkpoint's tensors by name and remembers what was asked for and not found.

    Args:
        tensors: the checkpoint, by name.
        origin: the directory or file, for error messages.
        prefix: stripped from every name that has it (e.g. ``transformer.`` of ``GPT2LMHeadModel``).
    """

    def __init__(self, tensors: Mapping[str, Tensor], *, origin: str, prefix: str = "") -> None:
        self.origin = origin
        self.tensors = {name.removeprefix(prefix) if prefix else name: tensor for name, tensor in tensors.items()}
        self.used: set[str] = set()
        self.missing: list[str] = []

    def has(self, name: str) -> bool:
        return name in self.tensors

    def take(self, name: str, *alternatives: str) -> Tensor:
        """The tensor called ``name`` (or the first of ``alternatives`` present); a zero-size placeholder is
        returned and the name recorded as missing when none is present."""
        for candidate in (name, *alternatives):
            if candidate in self.tensors:
                self.used.add(candidate)
                return self.tensors[candidate]
        self.missing.append(name)
        return torch.empty(0)

    def skip(self, patterns: Iterable[str]) -> None:
        """Mark tensors matching any of the ``fnmatch`` ``patterns`` as known but not needed."""
        patterns = tuple(patterns)
        self.used.update(name for name in self.tensors if any(fnmatch(name, pattern) for pattern in patterns))

    def check(self, architecture: str) -> None:
        """Raise a ``ValueError`` that lists missing and unexpected tensors, if there are any."""
        unexpected = sorted(set(self.tensors) - self.used)
        if self.missing or unexpected:
            raise CheckpointError(
                f"{self.origin}: the weights do not fit {architecture}: missing {sorted(self.missing)}, "
                f"unexpected {unexpected}"
            )


def load_mapped(model: nn.Module, mapped: Mapping[str, Tensor], *, origin: str) -> None:
    """Copy ``mapped`` (our parameter and buffer names) into ``model``; every name must fit in shape.

    A name that shares its storage with a mapped one (a tied output projection, an embedding shared by
    encoder and decoder) needs no entry of its own.

    Raises:
        ValueError: a name the model lacks or lacks from ``mapped``, or a shape that differs; the message
            lists them all.
    """
    state = model.state_dict()
    mapped = _with_aliases(state, mapped)
    missing = sorted(set(state) - set(mapped))
    unexpected = sorted(set(mapped) - set(state))
    shapes = [f"{name}: expected {tuple(state[name].shape)}, got {tuple(tensor.shape)}"
              for name, tensor in mapped.items() if name in state and state[name].shape != tensor.shape]
    if missing or unexpected or shapes:
        raise CheckpointError(f"{origin}: cannot load into {type(model).__name__}: missing {missing}, unexpected "
                              f"{unexpected}, shape mismatches {shapes}")
    with torch.no_grad():
        for name, tensor in mapped.items():
            state[name].copy_(tensor)


def _with_aliases(state: Mapping[str, Tensor], mapped: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``mapped`` plus every unmapped name of ``state`` whose tensor shares storage with a mapped name's."""
    by_storage = {state[name].data_ptr(): tensor for name, tensor in mapped.items() if name in state}
    extended = dict(mapped)
    for name, tensor in state.items():
        if name not in extended and tensor.data_ptr() in by_storage:
            extended[name] = by_storage[tensor.data_ptr()]
    return extended
