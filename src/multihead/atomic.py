"""Atomic writes of files and whole directories: a reader sees the old version or the new one, never half.

A directory is written beside its final place, flushed to disk, then swapped in by renames. If the
process dies between the two renames, ``recover_directory`` puts the previous version back.

A directory is replaced only when it is ours: empty, or holding nothing but the files our writers write
(:data:`OWNED_FILES`, with a ``config.json`` that describes a model). Anything else (a user's folder that
happens to sit at the destination) raises :class:`~multihead.errors.ConfigError` unless ``overwrite=True``;
even then only the files we write are replaced, in place, and the user's other files stay. A disk that fills
up mid-write raises one ``OSError`` (``ENOSPC``) that names the destination, with nothing half-written left.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

from multihead.errors import ConfigError

__all__ = ["OWNED_FILES", "atomic_directory", "foreign_entries", "recover_directory", "write_json_atomic",
           "write_text_atomic"]

OWNED_FILES = frozenset({
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "labels.json",
    "generation_config.json", "special_tokens_map.json", "training_state.safetensors", "training_state.json",
    "ema.safetensors",
})
"""File names our writers put in a model directory (ours and Hugging Face's); a writer that writes other
names passes them to :func:`atomic_directory` as ``owned``."""

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_MAX_CONFIG_BYTES = 16 << 20  # a config.json larger than this is not one we wrote


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system allows opening a directory
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the disk (or quota) is full: an ``OSError`` or a library's wrapped one
    (safetensors reports ``... (os error 28)``)."""
    if isinstance(error, OSError):
        return error.errno in _DISK_FULL
    return any(f"(os error {number})" in str(error) for number in _DISK_FULL)


def _disk_full_error(path: Path) -> OSError:
    return OSError(errno.ENOSPC, f"no space left on device while writing {path}; nothing was written there "
                                 "(the previous version, if any, is intact)")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Raises:
        OSError: ``ENOSPC`` when the disk fills up; ``path`` is then left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if _is_disk_full(error):
            raise _disk_full_error(path) from error
        raise
    _fsync_directory(path.parent)


def write_json_atomic(path: str | Path, value: Any) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def _old_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.old")


def recover_directory(final: str | Path) -> None:
    """If a swap was interrupted after the old version moved aside, move it back."""
    final = Path(final)
    old = _old_name(final)
    if not final.exists() and old.exists():
        os.replace(old, final)


def _is_model_config(path: Path) -> bool:
    """Whether ``path`` is a ``config.json`` that describes a model (ours or Hugging Face's)."""
    try:
        if path.stat().st_size > _MAX_CONFIG_BYTES:
            return False
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(values, dict) and (values.get("format") == "multihead" or "model_type" in values)


def foreign_entries(directory: str | Path, owned: Collection[str] = ()) -> list[str]:
    """Names in ``directory`` that none of our writers would write there (sorted; [] when it is ours).

    An entry is ours when it is a plain file named in :data:`OWNED_FILES` or ``owned``; a ``config.json``
    must also describe a model. Sub-folders, links and any other name belong to someone else.
    """
    names = OWNED_FILES | set(owned)
    foreign = []
    for entry in sorted(Path(directory).iterdir()):
        ours = entry.name in names and entry.is_file() and not entry.is_symlink()
        if not ours or (entry.name == "config.json" and not _is_model_config(entry)):
            foreign.append(entry.name)
    return foreign


def _refuse(final: Path, foreign: list[str]) -> ConfigError:
    shown = ", ".join(name[:40] for name in foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    return ConfigError(f"{final}: exists and holds files that are not a model directory's ({shown}); write to a new "
                       "directory, or pass --overwrite (overwrite=True) to replace only the model files there")


def _check_destination(final: Path, overwrite: bool, owned: Collection[str]) -> None:
    """Refuse, before anything is written, a ``final`` that is a file or link, or that holds a sub-folder or a
    ``config.json`` that is not a model's; other unknown files are judged once the writer's names are known."""
    if final.is_symlink() or (final.exists() and not final.is_dir()):
        raise ConfigError(f"{final}: exists and is not a directory; expected a new directory or a model directory")
    if overwrite or not final.exists():
        return
    surely = [name for name in foreign_entries(final, owned)
              if name == "config.json" or not (final / name).is_file() or (final / name).is_symlink()]
    if surely:
        raise _refuse(final, foreign_entries(final, owned))


def _merge(staging: Path, final: Path, owned: Collection[str]) -> None:
    """Move every file of ``staging`` into ``final`` and remove the files of ours that the new version lacks;
    the other entries of ``final`` stay."""
    written = {entry.name for entry in staging.iterdir()}
    for name in sorted(written):
        os.replace(staging / name, final / name)
    stale = set(OWNED_FILES | set(owned)) - written - set(foreign_entries(final, owned))
    for name in stale:
        with contextlib.suppress(FileNotFoundError):
            (final / name).unlink()
    _fsync_directory(final)


@contextlib.contextmanager
def atomic_directory(final: str | Path, *, overwrite: bool = False, owned: Collection[str] = ()) -> Iterator[Path]:
    """Yield an empty staging directory; on success it replaces ``final`` as a whole.

    On an exception the staging directory is removed and ``final`` is left as it was.

    Args:
        final: the directory to write; it may be absent, or ours (see :func:`foreign_entries`).
        overwrite: allow a ``final`` that holds other files: only our files there are replaced (not atomically
            as a whole; each file is swapped in by a rename) and the others stay.
        owned: file names the writer writes beyond :data:`OWNED_FILES`.

    Raises:
        ConfigError: ``final`` is a file, or holds files that are not ours and ``overwrite`` is False (sub-folders
            and a ``config.json`` that is not a model's are found before anything is written, other files once
            the writer's names are known); with ``overwrite``, a user's entry under a name we write.
        OSError: ``ENOSPC`` when the disk fills up; ``final`` is then left as it was.
    """
    final = Path(final)
    recover_directory(final)
    _check_destination(final, overwrite, owned)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by a writer that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield staging
        for file in staging.rglob("*"):
            if file.is_file():
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
        _fsync_directory(staging)
        written = {entry.name for entry in staging.iterdir()}
        owned = {*owned, *written}
        foreign = foreign_entries(final, owned) if final.is_dir() else []
        if foreign and not overwrite:
            raise _refuse(final, foreign)
        if clash := sorted(written & set(foreign)):  # a user's file (or folder) by one of our names
            raise ConfigError(f"{final}: {', '.join(clash)} there is not a model directory's; it is not replaced "
                              "even with --overwrite; write to a new directory")
        if foreign:
            _merge(staging, final, owned)
            staging.rmdir()
            return
        old = _old_name(final)
        if old.exists():
            shutil.rmtree(old)
        if final.exists():
            os.replace(final, old)
        os.replace(staging, final)
        _fsync_directory(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if _is_disk_full(error):
            raise _disk_full_error(final) from error
        raise
