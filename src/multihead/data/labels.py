"""LabelVocab: the mapping between label names and class indices, saved with a model as ``labels.json``."""

from __future__ import annotations

import json
import operator
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from multihead.data.errors import DataError

__all__ = ["LabelVocab"]

_SHOWN = 20  # how many known labels an error message lists


class LabelVocab:
    """Label names in a fixed order; a name's position is its class index.

    Args:
        names: distinct, non-empty label names, in index order.

    Example:
        >>> vocab = LabelVocab.from_labels(["pos", "neg", "pos"])
        >>> vocab.names, vocab.encode("pos"), vocab.decode(0)
        (['neg', 'pos'], 1, 'neg')
    """

    def __init__(self, names: Sequence[str]) -> None:
        names = list(names)
        if not names:
            raise ValueError("LabelVocab needs at least one label name, got none")
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"label names must be non-empty strings, got {name!r}")
        self.names: list[str] = names
        self._index = {name: index for index, name in enumerate(names)}
        if len(self._index) != len(names):
            repeated = sorted({name for name in names if names.count(name) > 1})
            raise ValueError(f"label names must be distinct, got {repeated} more than once")

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> LabelVocab:
        """The sorted distinct names among ``labels``, so the indices do not depend on the data's order."""
        return cls(sorted(set(labels)))

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, label: object) -> bool:
        return label in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelVocab) and self.names == other.names

    def __hash__(self) -> int:
        return hash(tuple(self.names))

    def __repr__(self) -> str:
        return f"LabelVocab({self.names!r})"

    def encode(self, label: str, *, source: str | None = None) -> int:
        """The index of ``label``.

        Args:
            label: a known label name.
            source: where the label came from (``"path:line"``), named in the error.

        Raises:
            DataError: ``label`` is unknown; the message names ``source`` and lists the known labels.
        """
        index = self._index.get(label)
        if index is None:
            known = self.names[:_SHOWN]
            more = f" and {len(self.names) - _SHOWN} more" if len(self.names) > _SHOWN else ""
            raise DataError(f"unknown label {label!r}; expected one of {known}{more}", path=source)
        return index

    def decode(self, index: int) -> str:
        """The name of class ``index``, ``0 <= index < len(self)``."""
        index = operator.index(index)  # ints, NumPy integers and one-element integer tensors
        if not 0 <= index < len(self.names):
            raise IndexError(f"label index {index} out of range; expected 0 <= index < {len(self.names)}")
        return self.names[index]

    def to_dict(self) -> dict[str, Any]:
        """``{"labels": [names in index order]}``."""
        return {"labels": list(self.names)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelVocab:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or not isinstance(data.get("labels"), list):
            raise ValueError(f'expected {{"labels": [names...]}}, got {data!r:.200}')
        return cls(data["labels"])

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as JSON, atomically: a temporary file in the same folder, then ``os.replace``."""
        path = Path(path)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(self.to_dict(), file, ensure_ascii=False, indent=2)
                file.write("\n")
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LabelVocab:
        """Read a file written by :meth:`save`; a malformed file raises :class:`DataError` naming it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DataError(f"invalid JSON ({error.msg} at column {error.colno}); expected "
                            f'{{"labels": [names...]}}', path=path, line=error.lineno) from error
        except UnicodeDecodeError as error:
            raise DataError(f"not UTF-8 ({error.reason}); expected a JSON file", path=path) from error
        try:
            return cls.from_dict(data)
        except ValueError as error:
            raise DataError(str(error), path=path) from error
