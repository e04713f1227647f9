"""Parallel text: line-aligned pairs, gzip, and bad rows named by file and line; Multi30k and tiny-shakespeare."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from multihead.data import DataError, ReadReport, data_root, multi30k, read_parallel, tinyshakespeare


def write(path: Path, text: str | bytes, *, compress: bool = False) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def test_pairs_in_order_with_sources(tmp_path: Path) -> None:
    source = write(tmp_path / "a.en.gz", "one\ntwo\n\nthree\n", compress=True)
    target = write(tmp_path / "a.de", "eins\nzwei\n\ndrei\n")
    pairs = list(read_parallel(source, target))
    assert [(p.text, p.label) for p in pairs] == [("one", "eins"), ("two", "zwei"), ("three", "drei")]
    assert pairs[2].source == f"{source}:4"


def test_unequal_lengths_name_the_shorter_file_and_line(tmp_path: Path) -> None:
    source = write(tmp_path / "s.txt", "a\nb\nc\n")
    target = write(tmp_path / "t.txt", "x\ny\n")
    with pytest.raises(DataError, match=r"t\.txt:3: the file ends at line 2") as caught:
        list(read_parallel(source, target))
    assert str(source) in str(caught.value)


@pytest.mark.parametrize(("source_text", "target_text", "where", "reason"), [
    ("a\n\nc\n", "x\ny\nz\n", "s.txt:2", "empty line"),
    ("a\nb\n", "x\n\xff\xfe\n", "t.txt:2", "utf-8"),
])
def test_bad_rows_raise_or_are_skipped_and_counted(tmp_path: Path, source_text: str, target_text: str, where: str,
                                                   reason: str) -> None:
    source = write(tmp_path / "s.txt", source_text.encode("latin-1"))
    target = write(tmp_path / "t.txt", target_text.encode("latin-1"))
    with pytest.raises(DataError, match=where) as caught:
        list(read_parallel(source, target))
    assert reason in str(caught.value).lower()
    report = ReadReport()
    kept = list(read_parallel(source, target, on_error="skip", report=report))
    assert report.skipped == 1 and len(kept) == len(source_text.splitlines()) - 1 and where in report.problems[0]


def test_missing_file_is_named(tmp_path: Path) -> None:
    write(tmp_path / "s.txt", "a\n")
    with pytest.raises(FileNotFoundError, match=r"t\.txt"):
        read_parallel(tmp_path / "s.txt", tmp_path / "t.txt")


def _root() -> Path:
    try:
        return data_root()
    except FileNotFoundError as error:
        pytest.skip(f"no data root: {error}")


def test_multi30k_splits() -> None:
    root = _root()
    if not (root / "multi30k").is_dir():
        pytest.skip(f"{root / 'multi30k'} is absent: multihead data fetch multi30k")
    splits = multi30k(root)
    assert {name: len(pairs) for name, pairs in splits.items()} == {"train": 29000, "validation": 1014, "test": 1000}
    first = splits["test"][0]
    assert first.text == "A man in an orange hat starring at something."
    assert first.label == "Ein Mann mit einem orangefarbenen Hut, der etwas anstarrt."
    assert multi30k(root, source="de", target="en")["test"][0].text == first.label


def test_tinyshakespeare_split_is_nanogpts() -> None:
    root = _root()
    if not (root / "tinyshakespeare").is_dir():
        pytest.skip(f"{root / 'tinyshakespeare'} is absent: multihead data fetch tinyshakespeare")
    texts = tinyshakespeare(root)
    assert (len(texts["train"]), len(texts["validation"])) == (1003854, 111540)
    assert texts["train"].startswith("First Citizen:")
