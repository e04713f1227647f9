"""One whole plain-text file (a language model's training text), read with the limits a stream needs.

Only a regular file is read: a FIFO would block forever and a device such as ``/dev/zero`` never ends, so
both are refused by what ``stat`` says, before a byte is read. At most ``max_bytes`` are read, whatever the
file claims its size is (it may grow, or lie, as files under ``/proc`` do).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from multihead.data.errors import DataError
from multihead.errors import LimitError
from multihead.limits import MAX_TEXT_BYTES

__all__ = ["check_regular_file", "read_text_file"]

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def check_regular_file(path: str | os.PathLike[str], *, expected: str = "a text file") -> os.stat_result:
    """``os.stat(path)`` of a regular file; a ``FileNotFoundError`` or a ``DataError`` naming what it is otherwise."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{os.fspath(path)}: no such file; expected {expected}") from None
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _KINDS if test(status.st_mode)), "not a regular file")
        raise DataError(f"is {kind}; expected {expected} (a regular file, read to its end)", path=path)
    return status


def read_text_file(path: str | os.PathLike[str], *, encoding: str = "utf-8", max_bytes: int = MAX_TEXT_BYTES) -> str:
    """The whole text of a regular file, decoded; errors name the file (and the line of a byte that is not
    ``encoding``).

    Raises:
        FileNotFoundError: no such file.
        DataError: not a regular file, or not valid ``encoding``.
        LimitError: more than ``max_bytes`` bytes.
    """
    status = check_regular_file(path)
    too_big = LimitError(f"{os.fspath(path)}: more than {max_bytes:,} bytes; plain-text training files are read "
                         f"whole and are limited to {max_bytes:,} bytes: split the file or sample it")
    if status.st_size > max_bytes:
        raise too_big
    with open(path, "rb") as handle:
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise too_big
    try:
        return raw.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise DataError(f"not valid {encoding} ({error.reason} at byte {error.start:,}); expected {encoding} text "
                        "(set data.encoding for files in another encoding)", path=Path(path), line=line) from None
