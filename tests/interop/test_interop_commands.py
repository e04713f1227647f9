"""``multihead embed`` and ``multihead convert`` in-process on tiny models, and the embedding API's batching."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch
from hf_tiny import bert, hf_model

from multihead.cli.interop import add_interop_commands
from multihead.embeddings import embed
from multihead.interop import load_hf
from multihead.tasks.classification import predict
from multihead.tokenizers import Tokenizer

TEXTS = ["the cat sat on the mat", "a dog ran", "the park was green and the dog ran in it all day"]


def tiny_bert_dir(path: Path, *, classify: bool = False) -> Path:
    """A tiny random BERT with a word-piece tokenizer trained on a few sentences."""
    tokenizer = Tokenizer.train_from_texts(TEXTS * 3, kind="wordpiece", vocab_size=80, lowercase=True,
                                           min_frequency=1)
    directory = bert(path, classify=classify, vocab_size=tokenizer.vocab_size, pad_token_id=tokenizer.pad_id)
    tokenizer.save(directory / "tokenizer.json")
    return directory


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    parser = argparse.ArgumentParser(prog="multihead")
    add_interop_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    assert args.run(args) == 0
    return capsys.readouterr().out


def test_embeddings_are_unit_vectors_that_do_not_depend_on_batching(tmp_path: Path) -> None:
    directory = tiny_bert_dir(tmp_path)
    together = embed(directory, TEXTS, batch_size=8)
    alone = torch.cat([embed(directory, [text]) for text in TEXTS])
    assert together.shape == (3, 32)
    torch.testing.assert_close(together.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=0)
    assert not torch.allclose(together[0], together[1])


def test_embed_command_prints_vectors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = tiny_bert_dir(tmp_path / "m")
    (tmp_path / "texts.txt").write_text("a dog ran\n\nthe cat sat on the mat\n")
    lines = run(["embed", str(directory), TEXTS[2], "--file", str(tmp_path / "texts.txt"), "--json"], capsys)
    records = [json.loads(line) for line in lines.splitlines()]
    assert [record["text"] for record in records] == [TEXTS[2], TEXTS[1], TEXTS[0]]
    expected = embed(directory, [TEXTS[2], TEXTS[1], TEXTS[0]])
    torch.testing.assert_close(torch.tensor([record["embedding"] for record in records]), expected, atol=1e-6,
                               rtol=0)
    plain = run(["embed", str(directory), TEXTS[1]], capsys).rstrip("\n")
    vector, text = plain.split("\t")
    assert text == TEXTS[1] and len(vector.split()) == 32


def test_convert_to_multihead_and_back_to_hf_keeps_the_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                              ) -> None:
    source = tiny_bert_dir(tmp_path / "hf")
    run(["convert", str(source), str(tmp_path / "ours"), "--to", "multihead"], capsys)
    config = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert config["task"] == "sentence-embedding" and config["converted_from"]["model_type"] == "bert"
    torch.testing.assert_close(embed(tmp_path / "ours", TEXTS), embed(source, TEXTS), atol=1e-6, rtol=0)
    run(["convert", str(tmp_path / "ours"), str(tmp_path / "back"), "--to", "hf"], capsys)
    ids = torch.tensor([Tokenizer.load(tmp_path / "back").encode(TEXTS[0])])
    with torch.no_grad():
        hidden = hf_model("BertModel", tmp_path / "back")(input_ids=ids).last_hidden_state
        torch.testing.assert_close(hidden, load_hf(source).model(ids), atol=1e-5, rtol=0)


def test_converted_classifier_predicts_with_its_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tiny_bert_dir(tmp_path / "hf", classify=True)
    run(["convert", str(source), str(tmp_path / "ours"), "--to", "multihead"], capsys)
    predictions = predict(tmp_path / "ours", TEXTS)
    assert sorted(predictions[0].probabilities) == ["neg", "neutral", "pos"]
    loaded = load_hf(source)
    ids = torch.tensor([loaded.tokenizer.encode(TEXTS[0])])  # type: ignore[union-attr]
    with torch.no_grad():
        probabilities = loaded.model(ids).softmax(-1)[0].tolist()
    assert list(predictions[0].probabilities.values()) == pytest.approx(probabilities, abs=1e-5)


def test_convert_names_a_directory_that_is_not_there(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="multihead")
    add_interop_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["convert", str(tmp_path / "nowhere"), str(tmp_path / "out"), "--to", "hf"])
    with pytest.raises(FileNotFoundError, match="nowhere: not a directory"):
        args.run(args)
