"""Fetching the known data sets from their public sources into a cache, and saying which are present.

``multihead data fetch NAME`` downloads each file of a set (``urllib``; a progress bar with rate and ETA),
unpacks or derives it where the source is packed differently, checks it against the sha256 the project knows,
and only then moves it into ``<root>/<name>/``. A file already there with the right checksum is kept; one with
another checksum is left alone unless the caller asks to replace it. Without a network, the error says so in
one line.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from multihead.data.datasets import SOURCES, data_root
from multihead.errors import ConfigError, LimitError, MultiheadError

__all__ = ["DOWNLOADS", "DataSetStatus", "FileDownload", "cache_root", "data_status", "fetch_data"]

MAX_DOWNLOAD_BYTES = 256 << 20
"""The largest file a fetch reads (the biggest source, SQuAD's train-v1.1.json, is 30 MB)."""

_GITHUB = "https://raw.githubusercontent.com"
_SQUAD = "https://rajpurkar.github.io/SQuAD-explorer/dataset"

# The 44 train-v1.1.json articles of squad/train-v1.1-du-part.json.gz: the first 44 of the official file.
_SQUAD_TRAIN_ARTICLES = 44


@dataclass(frozen=True)
class FileDownload:
    """Where one file of a data set comes from.

    Attributes:
        url: the public address.
        member: the file inside a zip archive at ``url`` (None: ``url`` is the file).
        derive: turns the downloaded bytes into the stored file (None: stored as downloaded).
        content_sha256: the sha256 of the stored file after gunzip, checked instead of :data:`SOURCES`' sha256
            when the project writes the gzip itself (so that its header's bytes do not matter).
    """

    url: str
    member: str | None = None
    derive: Callable[[bytes], bytes] | None = None
    content_sha256: str | None = None


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def _squad_train_part(data: bytes) -> bytes:
    """The first 44 articles of train-v1.1.json, keys sorted, gzipped: the shared ``train-v1.1-du-part``."""
    document = json.loads(data)
    part = {"data": document["data"][:_SQUAD_TRAIN_ARTICLES], "version": document["version"]}
    return _gzip(json.dumps(part, sort_keys=True).encode())


DOWNLOADS: dict[str, dict[str, FileDownload]] = {
    "sentence-polarity": {
        name: FileDownload(f"{_GITHUB}/nltk/nltk_data/gh-pages/packages/corpora/sentence_polarity.zip",
                           member=f"sentence_polarity/{name}")
        for name in ("rt-polarity.neg", "rt-polarity.pos")},
    "multi30k": {name: FileDownload(f"{_GITHUB}/multi30k/dataset/master/data/task1/raw/{name}")
                 for name in SOURCES["multi30k"]["files"]},
    "tinyshakespeare": {
        "input.txt": FileDownload(f"{_GITHUB}/karpathy/char-rnn/master/data/tinyshakespeare/input.txt")},
    "squad": {
        "dev-v1.1.json.gz": FileDownload(
            f"{_SQUAD}/dev-v1.1.json", derive=_gzip,
            content_sha256="95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"),
        "train-v1.1-du-part.json.gz": FileDownload(
            f"{_SQUAD}/train-v1.1.json", derive=_squad_train_part,
            content_sha256="e7853905d95f255090f58a2af5221c7f2b296934f8a6c1d77b36df4686f0d828"),
    },
}
"""How to fetch each set whose source serves plain files; the others (a Kaggle download, a PyPI package) say how
to get them in :data:`SOURCES`."""


def cache_root() -> Path:
    """Where fetched sets go: ``$MULTIHEAD_DATA`` when set, else ``~/.cache/multihead/data``."""
    configured = os.environ.get("MULTIHEAD_DATA", "")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "multihead" / "data"


@dataclass(frozen=True)
class DataSetStatus:
    """What ``multihead data list`` shows of one set: its folder, which files are there, how to get it."""

    name: str
    folder: Path | None
    present: tuple[str, ...]
    missing: tuple[str, ...]
    fetchable: bool
    source: str
    licence: str


def data_status() -> list[DataSetStatus]:
    """Every known set, with the files found under the data root (see :func:`~multihead.data.data_root`)."""
    try:
        root: Path | None = data_root()
    except FileNotFoundError:
        root = None
    statuses = []
    for name, source in SOURCES.items():
        folder = None if root is None or "package" in source else root / name
        files = tuple(source["files"])
        present = tuple(f for f in files if folder is not None and (folder / f).is_file())
        if "package" in source:
            import importlib.util

            present = files if importlib.util.find_spec(source["package"].split("==")[0]) else ()
        statuses.append(DataSetStatus(name=name, folder=folder, present=present,
                                      missing=tuple(f for f in files if f not in present),
                                      fetchable=name in DOWNLOADS, source=source["source"],
                                      licence=source["licence"]))
    return statuses


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _matches(name: str, file: str, data: bytes) -> bool:
    """Whether ``data`` is the file the project knows (its sha256, or its content's for files we gzip)."""
    download = DOWNLOADS.get(name, {}).get(file)
    if download is not None and download.content_sha256 is not None:
        try:
            return _sha256(gzip.decompress(data)) == download.content_sha256
        except (OSError, EOFError):
            return False
    return _sha256(data) == SOURCES[name]["files"][file]


def _download(url: str, *, progress: bool, opener: Callable[[str], io.BufferedIOBase]) -> bytes:
    """The bytes at ``url``, read in chunks under :data:`MAX_DOWNLOAD_BYTES`, with a progress bar."""
    try:
        response = opener(url)
    except OSError as error:  # URLError, HTTPError, socket errors
        raise MultiheadError(f"{url}: could not download ({getattr(error, 'reason', error)}); without a network, "
                             f"copy the files into {cache_root()} (see `multihead data list`)") from error
    total = getattr(response, "length", None)
    chunks, size = [], 0
    with response, tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1],
                        disable=not progress) as bar:
        while chunk := response.read(1 << 20):
            size += len(chunk)
            if size > MAX_DOWNLOAD_BYTES:
                raise LimitError(f"{url}: more than {MAX_DOWNLOAD_BYTES >> 20} MiB; expected a smaller file")
            chunks.append(chunk)
            bar.update(len(chunk))
    return b"".join(chunks)


def _default_opener(url: str) -> io.BufferedIOBase:
    return urllib.request.urlopen(url, timeout=60)


def _write_new(target: Path, data: bytes) -> None:
    """Write ``data`` beside ``target``, then rename it into place: a reader never sees half a file."""
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def fetch_data(name: str, *, root: str | os.PathLike[str] | None = None, replace: bool = False,
               progress: bool = True, opener: Callable[[str], io.BufferedIOBase] | None = None) -> Path:
    """Download the set ``name`` into ``root/name`` (``root`` default :func:`cache_root`) and check every file.

    Args:
        replace: replace a file that is there with another checksum (otherwise that is an error).
        opener: ``url -> readable response`` (default ``urllib.request.urlopen``; tests pass their own).

    Returns:
        The set's folder.

    Raises:
        ConfigError: an unknown set, or one that cannot be fetched (the message says how to get it).
        MultiheadError: no network, a checksum that does not match, a file in the way.
    """
    if name not in SOURCES:
        raise ConfigError(f"unknown data set {name[:80]!r}; known: {', '.join(SOURCES)}")
    if name not in DOWNLOADS:
        source = SOURCES[name]
        how = f"pip install {source['package']}" if "package" in source else f"download it from {source['url']}"
        raise ConfigError(f"{name} cannot be fetched automatically ({source['source']}); {how}")
    folder = Path(root).expanduser() if root is not None else cache_root()
    folder = folder / name
    open_url = opener or _default_opener
    archives: dict[str, bytes] = {}
    for file, download in DOWNLOADS[name].items():
        target = folder / file
        if target.is_file():
            if _matches(name, file, target.read_bytes()):
                continue
            if not replace:
                raise MultiheadError(f"{target}: is there with another checksum; move it away or pass --replace")
        if download.url not in archives:
            archives[download.url] = _download(download.url, progress=progress, opener=open_url)
        data = archives[download.url]
        if download.member is not None:
            try:
                data = zipfile.ZipFile(io.BytesIO(data)).read(download.member)
            except (zipfile.BadZipFile, KeyError) as error:
                raise MultiheadError(f"{download.url}: expected a zip archive holding {download.member} ({error})") \
                    from error
        if download.derive is not None:
            data = download.derive(data)
        if not _matches(name, file, data):
            raise MultiheadError(f"{download.url}: {file} does not match the sha256 the project knows; "
                                 "the source changed or the download was damaged; nothing was written")
        folder.mkdir(parents=True, exist_ok=True)
        _write_new(target, data)
    return folder
