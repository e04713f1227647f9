"""Translating the options that several Hugging Face architectures share: activation names, and the
checks that say which of our configurations an architecture can hold."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multihead.errors import CheckpointError, ConfigError
from multihead.models.config import TransformerConfig

__all__ = ["Requirements", "activation_from_hf", "activation_to_hf", "hf_value"]

_FROM_HF = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",
    "silu": "silu",
    "swish": "silu",
}
_TO_HF = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu", "silu": "silu"}


def activation_from_hf(name: object, *, origin: str, key: str) -> str:
    """Our activation for a Hugging Face ``hidden_act`` / ``activation_function`` value."""
    if not isinstance(name, str) or name not in _FROM_HF:
        raise CheckpointError(f"{origin}: {key} {name!r:.80} is not supported; expected one of {sorted(_FROM_HF)}")
    return _FROM_HF[name]


def activation_to_hf(config: TransformerConfig) -> str:
    """The Hugging Face name of ``config.activation`` (``swiglu`` has none in these architectures)."""
    return _TO_HF.get(config.activation, config.activation)


def hf_value(config: Mapping[str, Any], key: str, default: Any = None, *, origin: str, kind: type = int) -> Any:
    """``config[key]`` (or ``default`` when absent) checked to be a ``kind``; errors name the file and key."""
    value = config.get(key, default)
    if value is None and default is None:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CheckpointError(f"{origin}: {key} must be {kind.__name__}, got {value!r:.80}")
    return value


class Requirements:
    """Collects every way a model misses an architecture, then raises once with the whole list.

    Args:
        architecture: the Hugging Face class the model is being saved as, for the message.
    """

    def __init__(self, architecture: str) -> None:
        self.architecture = architecture
        self.problems: list[str] = []

    def need(self, name: str, actual: object, expected: object) -> None:
        """Record a problem unless ``actual == expected``."""
        if actual != expected:
            self.problems.append(f"{name} must be {expected!r} (got {actual!r})")

    def need_one_of(self, name: str, actual: object, allowed: tuple[object, ...]) -> None:
        """Record a problem unless ``actual`` is one of ``allowed``."""
        if actual not in allowed:
            self.problems.append(f"{name} must be one of {allowed!r} (got {actual!r})")

    def check(self) -> None:
        if self.problems:
            raise ConfigError(f"cannot save as {self.architecture}: " + "; ".join(self.problems))

    def shared(self, config: TransformerConfig) -> None:
        """What BERT, GPT-2 and Marian have in common: LayerNorm, biases, plain multi-head attention."""
        self.need("norm", config.norm, "layer")
        self.need("bias", config.bias, True)
        self.need_one_of("n_kv_heads", config.n_kv_heads, (None, config.n_heads))
        self.need("pruned_heads", config.pruned_heads, None)
        self.need_one_of("activation", config.activation, tuple(_TO_HF))
