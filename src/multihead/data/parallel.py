"""Parallel text: two line-aligned files (source and target), streamed pair by pair."""

from __future__ import annotations

import os
from collections.abc import Iterator
from itertools import zip_longest
from pathlib import Path

from multihead.data.errors import DataError, ReadReport
from multihead.data.reading import Example, OnError, text_lines
from multihead.errors import ConfigError

__all__ = ["read_parallel"]


def read_parallel(source_path: str | os.PathLike[str], target_path: str | os.PathLike[str], *,
                  encoding: str = "utf-8", on_error: OnError = "raise",
                  report: ReadReport | None = None) -> Iterator[Example]:
    """Pairs of line-aligned files as examples: ``text`` the source line, ``label`` the target line.

    Files may be gzipped. Both must have the same number of lines; a line that is empty on one side only, or
    undecodable on either, is a bad row (raised, or skipped and counted with ``on_error="skip"``). Lines empty
    on both sides are skipped silently.

    Raises:
        DataError: names the file and line (a length mismatch names the shorter file and where it ended).
    """
    source, target = Path(source_path), Path(target_path)
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r:.80}")
    report = report if report is not None else ReadReport()
    for path in (source, target):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file; expected a text file with one sentence a line")
    return _pairs(source, target, encoding, on_error, report)


def _pairs(source: Path, target: Path, encoding: str, on_error: OnError, report: ReadReport) -> Iterator[Example]:
    number = 0
    for left, right in zip_longest(text_lines(source, encoding), text_lines(target, encoding)):
        if left is None or right is None:
            short, long_ = (source, target) if left is None else (target, source)
            raise DataError(f"the file ends at line {number}, but {long_} has more lines; expected line-aligned "
                            "files of equal length", path=short, line=number + 1)
        number, source_text, source_problem = left
        _, target_text, target_problem = right
        source_text, target_text = source_text.rstrip("\r\n"), target_text.rstrip("\r\n")
        problem = (source, source_problem) if source_problem else (target, target_problem) if target_problem else None
        if problem is None and bool(source_text.strip()) != bool(target_text.strip()):
            empty = source if not source_text.strip() else target
            problem = (empty, "empty line where the other file has a sentence; expected aligned lines")
        if problem is not None:
            error = DataError(problem[1], path=problem[0], line=number)
            if on_error == "raise":
                raise error
            report.record(str(error))
            continue
        if source_text.strip():
            yield Example(source_text, target_text, f"{source}:{number}")
