"""What every reader of :mod:`multihead.data.readers` shares: the ``Example`` it yields, option checks, opening
(gzip by magic bytes), decoding line by line (an undecodable byte reported at its line) and bad-row handling.
"""

from __future__ import annotations

import codecs
import gzip
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from multihead.data.errors import DataError, ReadReport
from multihead.data.text_file import check_regular_file
from multihead.errors import ConfigError
from multihead.limits import MAX_LINE_BYTES

__all__ = ["Example", "OnError", "RowErrors", "check_options", "decode_problem", "open_binary", "text_lines"]

OnError = Literal["raise", "skip"]


@dataclass(frozen=True)
class Example:
    """One text with its label (None when unlabelled) and where it came from (``"path:line"`` or a file path)."""

    text: str
    label: str | None
    source: str


def check_options(path: Path, encoding: str, on_error: str, *, folder: bool = False) -> None:
    if folder and not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder; expected a folder with one sub-folder per class")
    if not folder:
        check_regular_file(path, expected="a data file")  # a FIFO or a device would block or never end
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r:.80}")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"unknown encoding {encoding!r:.80}") from None
    if "a\n".encode(encoding)[-2:] != b"a\n":
        raise ConfigError(f"encoding {encoding!r:.80} does not write a newline as the byte \\n; readers decode line by "
                          f"line and need an ASCII-compatible encoding such as utf-8, latin-1 or cp1252")


@contextmanager
def open_binary(path: Path) -> Iterator[BinaryIO]:
    """Open ``path`` for reading bytes, through gzip when it starts with gzip's magic bytes."""
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if compressed:
            with gzip.GzipFile(fileobj=raw) as stream:
                yield stream  # type: ignore[misc]
        else:
            yield raw


def decode_problem(line: bytes, error: UnicodeDecodeError, encoding: str, offset: int = 0) -> str:
    """The problem ``error`` reports, told within ``line``, which starts at byte ``offset`` of what was decoded."""
    bad = line[error.start - offset:error.end - offset]
    return (f"cannot decode byte{'s' if len(bad) > 1 else ''} {bad.hex(' ')} at byte {error.start - offset + 1} of "
            f"the line as {encoding}; expected {encoding} text (pass encoding= for files in another encoding)")


def text_lines(path: Path, encoding: str) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line number, text with its line ending, problem)``; ``problem`` is "" unless undecodable.

    An undecodable line comes with its text decoded with replacement characters, so that a CSV parser can go on.
    """
    number = 0
    with open_binary(path) as stream:
        try:
            while raw := stream.readline(MAX_LINE_BYTES + 1):
                number += 1
                if len(raw) > MAX_LINE_BYTES:
                    raise DataError(f"a line of more than {MAX_LINE_BYTES:,} bytes; expected one example a line "
                                    "(is this a data file?)", path=path, line=number)
                if number == 1 and b"\r" in raw.rstrip(b"\r\n"):
                    raise DataError("lines end with a bare carriage return (CR, classic Mac OS); expected LF or CRLF "
                                    "line endings (convert the file, e.g. tr '\\r' '\\n' < OLD > NEW)", path=path,
                                    line=1)
                try:
                    text, problem = raw.decode(encoding), ""
                except UnicodeDecodeError as error:
                    text, problem = raw.decode(encoding, errors="replace"), decode_problem(raw, error, encoding)
                if number == 1 and text.startswith("\ufeff"):
                    text = text[1:]
                yield number, text, problem
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(f"cannot read the file ({error}); expected a complete, uncorrupted file",
                            path=path, line=number + 1) from error


class RowErrors:
    """Raise or count bad rows, as ``on_error`` says."""

    def __init__(self, path: Path, on_error: OnError, report: ReadReport | None) -> None:
        self.path, self.on_error, self.given = path, on_error, report is not None
        self.report = report if report is not None else ReadReport()
        self.start = self.report.skipped

    def bad(self, message: str, line: int | None = None, *, path: Path | None = None) -> None:
        error = DataError(message, path=self.path if path is None else path, line=line)
        if self.on_error == "raise":
            raise error
        self.report.record(str(error))

    def finish(self) -> None:
        skipped = self.report.skipped - self.start
        if skipped and not self.given:
            warnings.warn(f"{self.path}: skipped {skipped} bad rows, first: {self.report.problems[0]} "
                          f"(pass report=ReadReport() to collect them)", stacklevel=3)
