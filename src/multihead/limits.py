"""Size limits: every bound the project checks before it allocates, in one place.

A request over a limit raises :class:`~multihead.errors.LimitError` naming the setting, its value and the bound,
before any memory is taken: a config asking for ``d_model: 1e9`` fails in microseconds instead of trying to
allocate terabytes. The bounds are far above every model and data set the project ships (the largest Llama
configs have 128k-token vocabularies, 8k-wide layers and a few billion parameters).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any

from multihead.errors import LimitError

__all__ = [
    "MAX_CHARS_PER_TOKEN",
    "MAX_HEADS",
    "MAX_LAYERS",
    "MAX_LINE_BYTES",
    "MAX_NEW_TOKENS",
    "MAX_PARAMETERS",
    "MAX_POSITIONS",
    "MAX_TEXT_BYTES",
    "MAX_VOCAB",
    "MAX_WIDTH",
    "check_bound",
    "check_parameters",
    "check_sizes",
    "physical_memory",
    "text_cap",
]

MAX_VOCAB = 1 << 22
"""Tokens in a vocabulary (4,194,304; real ones have up to ~256k)."""
MAX_WIDTH = 1 << 16
"""Any width: ``d_model``, ``d_ff``, an embedding or hidden size (65,536)."""
MAX_LAYERS = 1024
MAX_HEADS = 1024
MAX_POSITIONS = 1 << 20
"""``max_length`` of a model: positions it can embed or cache (1,048,576)."""
MAX_PARAMETERS = 20_000_000_000
"""Parameters of one model (80 GB as float32)."""
MAX_NEW_TOKENS = 1 << 20
"""Tokens one generation call may add (also bounded by the model's positions and by memory)."""
MAX_TEXT_BYTES = 1 << 31
"""Bytes read from one plain-text training file (2 GiB); a stream that goes on (``/dev/zero``) stops here."""
MAX_LINE_BYTES = 1 << 28
"""Bytes of one line of a data file, or of one file of a class folder (256 MiB)."""
MAX_CHARS_PER_TOKEN = 64
"""Characters given to the tokenizer per token of ``max_length`` (plus a fixed 1,024): text past this cannot
reach the kept tokens unless tokens average more than 64 characters, so truncating first saves the memory
and time of tokenizing a 50 MB line in full."""


def check_bound(name: str, value: int | float, bound: int | float, *, hint: str = "") -> None:
    """Raise ``LimitError`` when ``value`` is over ``bound``, naming the setting ``name``."""
    if value > bound:
        raise LimitError(f"{name} = {_figure(value)} is over the limit of {_figure(bound)}"
                         + (f"; {hint}" if hint else ""))


def check_parameters(count: int, *, where: str) -> None:
    """Raise ``LimitError`` when a model of ``count`` parameters is over :data:`MAX_PARAMETERS` or cannot fit in
    this machine's memory even at two bytes a parameter (bfloat16)."""
    if count > MAX_PARAMETERS:
        raise LimitError(f"{where}: the model would have about {_figure(count)} parameters, over the limit of "
                         f"{_figure(MAX_PARAMETERS)}; lower the sizes")
    memory = physical_memory()
    if memory is not None and 2 * count > memory:
        raise LimitError(f"{where}: the model would have about {_figure(count)} parameters "
                         f"({2 * count / 1e9:.1f} GB even as bfloat16), more than this machine's "
                         f"{memory / 1e9:.1f} GB of memory; lower the sizes")


def check_sizes(config: Any, *, where: str) -> None:
    """Bound the integer sizes of a model config dataclass by their names (``*vocab*``, ``*layers*``, ``*heads*``,
    ``max_length``, any other a width), then a rough parameter count (embeddings plus square layers)."""
    widths, vocabularies, depths = [1], [0], [1]
    for field in dataclasses.fields(config):
        values = getattr(config, field.name)
        for value in values if isinstance(values, tuple) else (values,):
            if not isinstance(value, int) or isinstance(value, bool) or field.name == "pad_id":
                continue
            if "vocab" in field.name:
                bound, group = MAX_VOCAB, vocabularies
            elif "layers" in field.name:
                bound, group = MAX_LAYERS, depths
            elif "heads" in field.name:
                bound, group = MAX_HEADS, []
            elif field.name == "max_length":
                bound, group = MAX_POSITIONS, []
            else:
                bound, group = MAX_WIDTH, widths
            check_bound(f"{where}.{field.name}", value, bound)
            group.append(value)
    width = max(widths)
    check_parameters(2 * max(vocabularies) * width + 8 * max(depths) * width * width, where=where)


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def text_cap(max_length: int) -> int:
    """Characters of one text worth tokenizing when only ``max_length`` tokens are kept."""
    return MAX_CHARS_PER_TOKEN * max_length + 1024


def _figure(value: int | float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, float) and value != int(value):
        return f"{value:g}"
    return f"{int(value):,}"
