"""Readers that stream labelled text from delimited files, JSON lines, plain text and class folders.

Every reader is lazy: it opens the file when the first example is asked for and holds one line (or, for
:func:`read_folder`, one file) in memory at a time. Files compressed with gzip (found by their magic bytes,
whatever the name) are read transparently. Bytes are decoded one line at a time, so an undecodable byte is
reported at its exact line; this needs an encoding in which a newline is the one byte ``\\n`` (UTF-8,
Latin-1, cp1252, ...: not UTF-16 or UTF-32). A UTF-8 byte-order mark at the start of a file is dropped.

Options every reader takes, keyword-only:
    encoding: an ASCII-compatible text encoding (default "utf-8").
    on_error: "raise" (default): the first bad row raises :class:`DataError`, whose message starts with
        ``"{path}:{line}: "``. "skip": bad rows are skipped and counted in ``report``.
    report: a :class:`ReadReport` that counts skipped rows; without one, a warning says how many were skipped
        when the reader is exhausted.
Problems with the whole file (missing file, missing column, no header, corrupt gzip) always raise. Options are
checked, and the file's existence too, when the reader is made; the file is opened at the first example.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from multihead.data.errors import DataError, ReadReport
from multihead.data.reading import Example, OnError, RowErrors, check_options, decode_problem, open_binary, text_lines
from multihead.errors import ConfigError
from multihead.limits import MAX_LINE_BYTES

__all__ = ["FORMATS", "Example", "infer_format", "read_delimited", "read_examples", "read_folder", "read_jsonl",
           "read_lines"]

FORMATS = ("csv", "tsv", "jsonl", "txt", "folder")
_SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "txt"}
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


def read_lines(path: str | os.PathLike[str], *, label: str | None = None, encoding: str = "utf-8",
               on_error: OnError = "raise", report: ReadReport | None = None) -> Iterator[Example]:
    """One example per line of a text file (its text without the line ending), blank lines skipped silently.

    Args:
        path: the file (gzip allowed).
        label: the label every example gets (None: unlabelled).
        encoding, on_error, report: see the module docstring; the bad rows are undecodable lines.
    """
    check_options(Path(path), encoding, on_error)
    return _read_lines(Path(path), label, encoding, RowErrors(Path(path), on_error, report))


def _read_lines(path: Path, label: str | None, encoding: str, errors: RowErrors) -> Iterator[Example]:
    for number, text, problem in text_lines(path, encoding):
        if problem:
            errors.bad(problem, number)
            continue
        text = text.rstrip("\r\n")
        if text.strip():
            yield Example(text, label, f"{path}:{number}")
    errors.finish()


def read_jsonl(path: str | os.PathLike[str], *, text_key: str, label_key: str | None = None,
               encoding: str = "utf-8", on_error: OnError = "raise",
               report: ReadReport | None = None) -> Iterator[Example]:
    """Examples from JSON lines (one object a line, text under ``text_key``); blank lines are skipped.

    Labels may be strings, integers or booleans; they become strings (``7`` -> ``"7"``, ``true`` -> ``"true"``).

    Args:
        path: the file (gzip allowed).
        text_key: key of the text, a non-empty string.
        label_key: key of the label; None for unlabelled data.
        encoding, on_error, report: see the module docstring.
    """
    check_options(Path(path), encoding, on_error)
    return _read_jsonl(Path(path), text_key, label_key, encoding, RowErrors(Path(path), on_error, report))


def _read_jsonl(path: Path, text_key: str, label_key: str | None, encoding: str, errors: RowErrors
                ) -> Iterator[Example]:
    for number, line, problem in text_lines(path, encoding):
        if problem:
            errors.bad(problem, number)
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            errors.bad(f"invalid JSON ({error.msg} at column {error.colno}); expected one JSON object a line", number)
            continue
        except RecursionError:
            errors.bad("JSON nested too deeply; expected one JSON object a line, with the text under a key", number)
            continue
        if not isinstance(record, dict):
            errors.bad(f"expected a JSON object, got {_json_type(record)}", number)
            continue
        text, problem = _field(record, text_key, "text")
        label: str | None = None
        if not problem and label_key is not None:
            label, problem = _field(record, label_key, "label")
        if problem:
            errors.bad(problem, number)
            continue
        yield Example(text, label, f"{path}:{number}")  # type: ignore[arg-type]
    errors.finish()


def _json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _field(record: dict[str, Any], key: str, role: str) -> tuple[str | None, str]:
    """``(value as a string, "")`` or ``(None, problem)`` for the text or the label of a JSON object."""
    if key not in record:
        return None, f"missing key {key!r} for the {role}; the object has keys {sorted(record)}"
    value = record[key]
    if role == "label" and isinstance(value, bool):
        return ("true" if value else "false"), ""
    if role == "label" and isinstance(value, int):
        return str(value), ""
    if not isinstance(value, str):
        expected = "a string" if role == "text" else "a string, an integer or a boolean"
        return None, f"{key!r} is {_json_type(value)}; expected {expected} for the {role}"
    if not value.strip():
        return None, f"empty {role} under {key!r}; expected some text"
    return value, ""


def read_delimited(path: str | os.PathLike[str], *, text_column: str, label_column: str | None = None,
                   delimiter: str | None = None, quoting: bool | None = None, encoding: str = "utf-8",
                   on_error: OnError = "raise", report: ReadReport | None = None) -> Iterator[Example]:
    """Examples from a CSV or TSV file whose first row names the columns; blank rows are skipped.

    An example's source is ``"path:line"`` with the line where its row starts.

    Args:
        path: the file (gzip allowed).
        text_column: header name of the text column.
        label_column: header name of the label column; None for unlabelled data.
        delimiter: one character; None: tab for ``.tsv``, comma for ``.csv`` (``.gz`` ignored).
        quoting: whether ``"`` quotes fields (which may then hold delimiters and newlines); None: yes for
            comma-separated files, no for tab-separated ones (TSV files rarely quote, and a stray quote would
            otherwise swallow the lines after it).
        encoding, on_error, report: see the module docstring.
    """
    path = Path(path)
    check_options(path, encoding, on_error)
    delimiter = {".tsv": "\t", ".csv": ","}.get(_inner_suffix(path), "") if delimiter is None else delimiter
    if len(delimiter) != 1:
        raise ConfigError(f"{path}: delimiter must be one character, got {delimiter!r:.80}; pass delimiter= unless the "
                          f"name ends in .tsv or .csv (optionally .gz)")
    quoting = delimiter != "\t" if quoting is None else quoting
    return _read_delimited(path, text_column, label_column, delimiter, quoting, encoding,
                           RowErrors(path, on_error, report))


def _read_delimited(path: Path, text_column: str, label_column: str | None, delimiter: str, quoting: bool,
                    encoding: str, errors: RowErrors) -> Iterator[Example]:
    problems: dict[int, str] = {}  # undecodable lines seen by the parser and not yet reported

    def texts() -> Iterator[str]:
        for number, text, problem in text_lines(path, encoding):
            if problem:
                problems[number] = problem
            yield text

    reader = csv.reader(texts(), delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
    name = "tab-separated" if delimiter == "\t" else f"{delimiter!r}-separated"
    try:
        header = next(reader)
    except StopIteration:
        raise DataError("empty file; expected a header row naming the columns", path=path) from None
    if problems:
        raise DataError(problems[min(problems)], path=path, line=min(problems))
    columns = [_column(path, header, text_column, "text_column")]
    if label_column is not None:
        columns.append(_column(path, header, label_column, "label_column"))
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            problems.clear()
            errors.bad(f"malformed row ({error}); expected {len(header)} {name} fields", start)
            continue
        if problems:  # an undecodable line within this row
            line = min(problems)
            message = problems[line]
            problems.clear()
            errors.bad(message, line)
            continue
        if not row:
            continue
        if len(row) != len(header):
            errors.bad(f"expected {len(header)} {name} fields (as in the header), got {len(row)}", start)
            continue
        values = [row[index] for index in columns]
        empty = [role for role, value in zip(("text", "label"), values, strict=False) if not value.strip()]
        if empty:
            column = text_column if empty[0] == "text" else label_column
            errors.bad(f"empty {empty[0]} in column {column!r}; expected some text", start)
            continue
        yield Example(values[0], values[1] if len(values) > 1 else None, f"{path}:{start}")
    errors.finish()


def _column(path: Path, header: list[str], column: str, option: str) -> int:
    """Index of ``column`` in the header, or DataError naming it and listing the header."""
    found = [index for index, name in enumerate(header) if name == column]
    if len(found) != 1:
        problem = "no column" if not found else f"{len(found)} columns named"
        raise DataError(f"{problem} {column!r:.80}; the header has {header}; expected exactly one (set {option}=)",
                        path=path, line=1)
    return found[0]


def _inner_suffix(path: Path) -> str:
    """The suffix that names the format, looking through a trailing ``.gz``."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def read_folder(path: str | os.PathLike[str], *, encoding: str = "utf-8", fallback_encoding: str | None = None,
                on_error: OnError = "raise", report: ReadReport | None = None,
                suffixes: Sequence[str] = (".txt",)) -> Iterator[Example]:
    """One example per file (text: its content; source: its path) of a folder with one sub-folder per class.

    Class folders and their files are visited in sorted order, so the order is the same on every machine.
    Hidden entries, files directly in ``path`` and deeper folders are ignored. Each file is read whole.

    Args:
        path: the folder; its sub-folders' names are the labels.
        encoding: the files' text encoding.
        fallback_encoding: tried on a file that ``encoding`` cannot decode (e.g. "cp1252" for a corpus that is
            UTF-8 but for a few files); None: no second try.
        on_error, report: see the module docstring; the bad rows are undecodable or empty files.
        suffixes: the file name endings to read (a further ``.gz`` is allowed and decompressed).
    """
    root = Path(path)
    check_options(root, encoding, on_error, folder=True)
    if fallback_encoding is not None:
        check_options(root, fallback_encoding, on_error, folder=True)
    classes = sorted(entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise DataError("no class sub-folders; expected one sub-folder per class, named after it", path=root)
    return _read_folder(classes, encoding, fallback_encoding, tuple(suffixes), RowErrors(root, on_error, report))


def _read_folder(classes: list[Path], encoding: str, fallback_encoding: str | None, suffixes: tuple[str, ...],
                 errors: RowErrors) -> Iterator[Example]:
    for folder in classes:
        files = sorted(entry for entry in folder.iterdir() if not entry.name.startswith(".") and entry.is_file()
                       and entry.name.lower().removesuffix(".gz").endswith(suffixes))
        for file in files:
            with open_binary(file) as stream:
                raw = stream.read(MAX_LINE_BYTES + 1)
            if len(raw) > MAX_LINE_BYTES:
                errors.bad(f"more than {MAX_LINE_BYTES:,} bytes; expected one document a file", path=file)
                continue
            text, problem, line = _decode_file(raw, encoding, fallback_encoding)
            if not problem and not text.strip():
                problem = "empty file; expected some text"
            if problem:
                errors.bad(problem, line, path=file)
                continue
            yield Example(text, folder.name, str(file))
    errors.finish()


def _decode_file(raw: bytes, encoding: str, fallback_encoding: str | None) -> tuple[str, str, int | None]:
    """``(text, "", None)`` or ``("", problem, line)`` for the bytes of a whole file."""
    try:
        return raw.decode(encoding).removeprefix("\ufeff"), "", None
    except UnicodeDecodeError as error:
        if fallback_encoding is not None:
            try:
                return raw.decode(fallback_encoding), "", None
            except UnicodeDecodeError:
                pass
        start = raw.rfind(b"\n", 0, error.start) + 1
        tried = encoding if fallback_encoding is None else f"{encoding} or {fallback_encoding}"
        return "", decode_problem(raw[start:], error, tried, start), raw.count(b"\n", 0, error.start) + 1


def infer_format(path: str | os.PathLike[str]) -> str:
    """The reader format of ``path``: "folder" for a folder, else from the suffix (through ``.gz``).

    ``.csv`` -> "csv", ``.tsv`` -> "tsv", ``.jsonl`` / ``.ndjson`` -> "jsonl", ``.txt`` -> "txt".
    """
    path = Path(path)
    if path.is_dir():
        return "folder"
    suffix = _inner_suffix(path)
    if suffix not in _SUFFIX_FORMATS:
        raise ConfigError(f"{path}: cannot tell the format from the suffix {suffix[:20]!r}; expected one of "
                          f"{sorted(_SUFFIX_FORMATS)} (optionally .gz) or a folder; or name the format: data.format "
                          f"in a config, format= in Python (one of tsv, csv, jsonl, text, folder)")
    return _SUFFIX_FORMATS[suffix]


def read_examples(path: str | os.PathLike[str], *, format: str | None = None, text_field: str = "text",
                  label_field: str | None = "label", delimiter: str | None = None, encoding: str = "utf-8",
                  on_error: OnError = "raise", report: ReadReport | None = None) -> Iterator[Example]:
    """Examples from any supported file or folder, the reader chosen by ``format`` or by :func:`infer_format`.

    Args:
        path: a ``.csv``, ``.tsv``, ``.jsonl``, ``.txt`` file (each optionally ``.gz``) or a class folder.
        format: one of ``FORMATS`` (``text`` is accepted for ``txt``); None: inferred from ``path``.
        text_field: the text's column (CSV/TSV) or key (JSONL).
        label_field: the label's column or key; None for unlabelled data. Plain text is always unlabelled and
            folders are labelled by their sub-folders, whatever this says.
        delimiter: for CSV/TSV, overrides the delimiter the format implies.
        encoding, on_error, report: see the module docstring.
    """
    format = infer_format(path) if format is None else "txt" if format == "text" else format
    common: dict[str, Any] = {"encoding": encoding, "on_error": on_error, "report": report}
    if format in ("csv", "tsv"):
        delimiter = delimiter if delimiter is not None else ("\t" if format == "tsv" else ",")
        return read_delimited(path, text_column=text_field, label_column=label_field, delimiter=delimiter, **common)
    if format == "jsonl":
        return read_jsonl(path, text_key=text_field, label_key=label_field, **common)
    if format == "txt":
        return read_lines(path, **common)
    if format == "folder":
        return read_folder(path, **common)
    raise ConfigError(f"unknown format {format!r:.80}; expected one of {FORMATS}")
