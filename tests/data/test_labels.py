"""LabelVocab: deterministic order, encode / decode, the unknown-label error, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from multihead.data import DataError, LabelVocab


def test_from_labels_is_sorted_and_distinct() -> None:
    vocab = LabelVocab.from_labels(["pos", "neg", "pos", "neutral"])
    assert vocab.names == ["neg", "neutral", "pos"]
    assert len(vocab) == 3 and "pos" in vocab and "other" not in vocab
    assert LabelVocab.from_labels(reversed(["pos", "neg", "neutral"])) == vocab
    assert [vocab.encode(name) for name in vocab.names] == [0, 1, 2]
    assert [vocab.decode(i) for i in range(3)] == vocab.names
    assert vocab.decode(torch.tensor(2)) == "pos"


def test_unknown_label_names_source_and_known_labels() -> None:
    vocab = LabelVocab(["neg", "pos"])
    with pytest.raises(DataError) as caught:
        vocab.encode("positive", source="data/train.tsv:17")
    message = str(caught.value)
    assert message.startswith("data/train.tsv:17: ")
    assert "'positive'" in message and "['neg', 'pos']" in message
    with pytest.raises(DataError, match="and 5 more"):
        LabelVocab([f"l{i:02d}" for i in range(25)]).encode("x")


def test_invalid_vocabularies_and_indices() -> None:
    with pytest.raises(ValueError, match="distinct"):
        LabelVocab(["a", "b", "a"])
    with pytest.raises(ValueError, match="at least one"):
        LabelVocab.from_labels([])
    with pytest.raises(ValueError, match="non-empty strings"):
        LabelVocab(["a", ""])
    with pytest.raises(IndexError, match="expected 0 <= index < 2"):
        LabelVocab(["a", "b"]).decode(2)
    with pytest.raises(IndexError):
        LabelVocab(["a", "b"]).decode(-1)


def test_save_load_round_trip_is_atomic(tmp_path: Path) -> None:
    vocab = LabelVocab(["négatif", "positif"])
    path = tmp_path / "labels.json"
    vocab.save(path)
    assert json.loads(path.read_text(encoding="utf-8")) == {"labels": ["négatif", "positif"]}
    assert LabelVocab.load(path) == vocab
    assert LabelVocab.from_dict(vocab.to_dict()) == vocab
    LabelVocab(["x"]).save(path)  # replaces the old file
    assert LabelVocab.load(path).names == ["x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.json"]  # no temporary file left


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "labels": [\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.json:3: invalid JSON"):
        LabelVocab.load(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"names": ["a"]}', encoding="utf-8")
    with pytest.raises(DataError, match=r"wrong\.json: expected \{\"labels\""):
        LabelVocab.load(wrong)
