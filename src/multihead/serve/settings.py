"""``ServeSettings``: the limits and switches of one server, frozen and validated."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from multihead.errors import ConfigError

__all__ = ["ServeSettings"]


@dataclass(frozen=True, kw_only=True)
class ServeSettings:
    """How a server behaves; every size is bounded before anything is allocated.

    Attributes:
        api_key: when set, every route but ``/health`` (and the static page, which holds no data) needs
            ``Authorization: Bearer KEY``.
        max_body_bytes: largest request body; more is answered 413.
        max_prompt_tokens: most prompt tokens a generation request may bring (also bounded by the model's context).
        max_tokens: most tokens a request may ask to generate (``max_tokens``); more is answered 422.
        default_max_tokens: tokens generated when a request does not say (at most ``max_tokens``).
        slots: sequences decoded at once per generation model (rows of the continuous batch).
        batching: continuous batching on; ``False`` decodes one sequence at a time (``slots`` is then 1).
        max_queue: requests waiting per model; one more is answered 503 with ``Retry-After``.
        max_inputs: texts per embeddings, classification, translation or summarisation request.
        max_n: most choices (``n``) per chat or completion request.
        micro_batch_size: most texts run in one forward by a classifier or an encoder.
        micro_batch_wait: seconds a micro-batch waits for company once it holds a first text.
        request_timeout: seconds a request may run; a generation then ends (504, or an error event in a stream).
        retry_after: seconds a 503 asks the client to wait.
        attention_cache: completions remembered for ``/v1/attention`` (by id; 0 remembers none).
        max_attention_values: most weights one ``/v1/attention`` answer holds (layers x heads x queries x keys).
        allowed_origins: browser origins (``scheme://host:port``) besides the server's own that may call it.
        loopback_only: the server is reached on a loopback address: requests whose ``Host`` header is not a
            loopback name (or in ``allowed_hosts``) get 403 (a rebound DNS name cannot reach the server).
        allowed_hosts: ``Host`` names accepted besides loopback names when ``loopback_only``.
    """

    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    max_prompt_tokens: int = 1536
    max_tokens: int = 512
    default_max_tokens: int = 256
    slots: int = 8
    batching: bool = True
    max_queue: int = 64
    max_inputs: int = 128
    max_n: int = 8
    micro_batch_size: int = 32
    micro_batch_wait: float = 0.005
    request_timeout: float = 600.0
    retry_after: int = 1
    attention_cache: int = 64
    max_attention_values: int = 1_000_000
    allowed_origins: tuple[str, ...] = ()
    loopback_only: bool = True
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, least in (("max_body_bytes", 64), ("max_prompt_tokens", 1), ("max_tokens", 1),
                            ("default_max_tokens", 1), ("slots", 1), ("max_queue", 1), ("max_inputs", 1),
                            ("max_n", 1), ("micro_batch_size", 1), ("retry_after", 0), ("attention_cache", 0),
                            ("max_attention_values", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"ServeSettings.{name} must be an integer >= {least}, got {value!r}")
        for name in ("micro_batch_wait", "request_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"ServeSettings.{name} must be a finite number of seconds >= 0, got {value!r}")
        for name in ("batching", "loopback_only"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"ServeSettings.{name} must be True or False, got {getattr(self, name)!r}")
        if self.api_key is not None and (not isinstance(self.api_key, str) or not self.api_key.strip()
                                         or any(c.isspace() for c in self.api_key)):
            raise ConfigError("ServeSettings.api_key must be a non-empty string without spaces")
        for name in ("allowed_origins", "allowed_hosts"):
            values = getattr(self, name)
            if isinstance(values, str) or not all(isinstance(v, str) and v for v in values):
                raise ConfigError(f"ServeSettings.{name} must be a tuple of non-empty strings, got {values!r}")
            object.__setattr__(self, name, tuple(values))

    @property
    def decoding_slots(self) -> int:
        """Rows of each generation model's continuous batch: ``slots``, or 1 with batching off."""
        return self.slots if self.batching else 1

    def replace(self, **changes: Any) -> ServeSettings:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)
