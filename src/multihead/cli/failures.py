"""How ``multihead`` reports a failure: bad input as one line and exit status 2, a bug with its traceback.

Bad input is a :class:`~multihead.errors.MultiheadError`, or one of the few library exceptions that can only mean
a user's file or path is wrong (a missing or unreadable path, a YAML syntax error, a damaged safetensors file,
undecodable text, a full disk). Every other exception (``ValueError``, ``TypeError``, ... raised anywhere else)
is a bug and keeps its traceback. A closed pipe (``multihead eval ... | head -1``) ends the command quietly.
"""

from __future__ import annotations

import errno
import os
import sys

import yaml
from safetensors import SafetensorError

from multihead.errors import MultiheadError

__all__ = ["BAD_INPUT", "EXIT_BAD_INPUT", "EXIT_BROKEN_PIPE", "EXIT_INTERRUPTED", "one_line", "silence_stdout"]

EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 2, 130, 141  # 130, 141: 128 + SIGINT, 128 + SIGPIPE

BAD_INPUT: tuple[type[BaseException], ...] = (
    MultiheadError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError,
    yaml.YAMLError, SafetensorError, UnicodeDecodeError, ModuleNotFoundError, OSError,
)
"""The exception types :func:`one_line` may accept; it still returns None for the instances that are bugs."""

_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
_MAX_CHARS = 600


def one_line(error: BaseException) -> str | None:
    """The one-line message for an ``error`` that means bad input; None for a bug (which keeps its traceback)."""
    if isinstance(error, MultiheadError | yaml.YAMLError | SafetensorError | UnicodeDecodeError):
        text = str(error)
    elif isinstance(error, ModuleNotFoundError):
        if not error.name or error.name.split(".")[0] == "multihead":
            return None  # our own import is broken: a bug
        text = str(error) if "pip install" in str(error) else f"{error} (pip install {error.name.split('.')[0]})"
    elif isinstance(error, FileNotFoundError | IsADirectoryError | NotADirectoryError | PermissionError
                    | FileExistsError) or (isinstance(error, OSError) and error.errno in _DISK):
        text = _os_text(error)  # type: ignore[arg-type]
    else:
        return None
    text = " ".join(text.split())  # one line, whatever the library put in it
    return text if len(text) <= _MAX_CHARS else text[:_MAX_CHARS - 3] + "..."


def _os_text(error: OSError) -> str:
    """``"path: reason"`` for an ``OSError`` raised by ``open`` and friends; our own messages as they are."""
    if error.filename is None:
        return error.strerror or str(error)
    target = f" -> {error.filename2}" if error.filename2 is not None else ""
    return f"{error.filename}{target}: {error.strerror}"


def silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so that the interpreter's last flush does not complain."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, descriptor)
    os.close(devnull)
