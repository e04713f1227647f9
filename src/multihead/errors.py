"""The project's own exceptions: one base class that the CLI turns into one line and exit status 2.

Every message says what was wrong and what was expected, naming the file, line or value. A
``MultiheadError`` is a ``ValueError`` too, so callers that catch ``ValueError`` keep working.
Anything else that reaches the CLI is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["CheckpointError", "ConfigError", "LimitError", "MultiheadError", "QueueFullError"]


class MultiheadError(ValueError):
    """Bad input the user can fix: a file, a setting or a value; the message is one line."""


class ConfigError(MultiheadError):
    """A config file, a ``--set`` override or a constructor argument has a bad key or value."""


class CheckpointError(MultiheadError):
    """A model directory, safetensors, GGUF or ``config.json`` file is damaged or does not fit its config."""


class LimitError(MultiheadError):
    """A size (dimension, vocabulary, tokens to generate, bytes to read) is over what the project allows."""


class QueueFullError(LimitError):
    """A request queue (generation scheduler, micro-batcher) holds its maximum number of waiting requests;
    retry later (a server answers 503)."""
