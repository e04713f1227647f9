"""Errors in data files, and the report that counts the rows a reader skipped.

Every :class:`DataError` message starts with where the problem is, ``"{path}:{line}: "`` (or ``"{path}: "``
when a line makes no sense, as for a whole file or a file in a folder), then says what was wrong and what
was expected, so that a user can open the file at the right place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from multihead.errors import MultiheadError

__all__ = ["MAX_PROBLEMS", "DataError", "ReadReport"]

MAX_PROBLEMS = 20
"""How many problem messages a :class:`ReadReport` keeps; the count goes on past it."""


class DataError(MultiheadError):
    """A data file (or a label in it) is not what the reader expected.

    Args:
        message: what was wrong and what was expected, without the location.
        path: the file (or an ``"path:line"`` source) the problem is in; None when there is no file.
        line: 1-based line number, None when not applicable.

    Attributes:
        path: as given, as a string (None when absent).
        line: as given.
        reason: ``message`` without the location prefix.
    """

    def __init__(self, message: str, *, path: str | os.PathLike[str] | None = None, line: int | None = None) -> None:
        self.path = None if path is None else os.fspath(path)
        self.line = line
        self.reason = message
        super().__init__(location(path, line) + message)


def location(path: str | os.PathLike[str] | None, line: int | None = None) -> str:
    """The ``"{path}:{line}: "`` prefix (``"{path}: "`` without a line, ``""`` without a path)."""
    if path is None:
        return ""
    return f"{os.fspath(path)}: " if line is None else f"{os.fspath(path)}:{line}: "


@dataclass
class ReadReport:
    """What a reader skipped with ``on_error="skip"``.

    Attributes:
        skipped: how many rows (or files) were skipped, all of them.
        problems: the first :data:`MAX_PROBLEMS` messages, each naming the file and the line.
    """

    skipped: int = 0
    problems: list[str] = field(default_factory=list)

    def record(self, message: str) -> None:
        """Count one skipped row and keep its message while fewer than :data:`MAX_PROBLEMS` are kept."""
        self.skipped += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)

    def summary(self) -> str:
        """``"skipped N bad rows"`` followed by the kept messages, one a line."""
        head = f"skipped {self.skipped} bad row{'' if self.skipped == 1 else 's'}"
        more = self.skipped - len(self.problems)
        lines = [head, *(f"  {problem}" for problem in self.problems)]
        if more > 0:
            lines.append(f"  ... and {more} more")
        return "\n".join(lines)
