"""``DictConfig``: the JSON side of the models' frozen config dataclasses (``config.json`` in a model folder)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from multihead.errors import ConfigError

__all__ = ["DictConfig"]

C = TypeVar("C", bound="DictConfig")


class DictConfig:
    """Mixin for a dataclass config: ``to_dict`` and ``from_dict``, which names unknown keys."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any]) -> C:
        """Build from a mapping; unknown keys are errors (``ConfigError``) that name them."""
        known = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(str(key)[:80] for key in set(values) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} keys {unknown[:10]}; known keys are {sorted(known)}")
        return cls(**values)
