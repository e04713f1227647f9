"""Hostile data files: FIFOs and devices, endless or oversized streams, old Mac line endings, deep JSON, folders
where a file belongs. Each is one line naming the file, and none hangs or eats memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostile import classifier_dir, fails
from multihead.data import DataError, ReadReport, read_examples
from multihead.data.text_file import read_text_file
from multihead.errors import LimitError

LM_RECIPE = """\
task: language-model
output_dir: {output}
data: {{train: {train}}}
tokenizer: {{kind: char, vocab_size: 60, min_frequency: 1}}
model: {{preset: tiny, d_model: 16, n_heads: 2, n_layers: 1, d_ff: 32, max_length: 16}}
training: {{steps: 2, batch_size: 4, eval_every: 2, progress: false}}
"""


@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return classifier_dir(tmp_path_factory.mktemp("classifier") / "model")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes (POSIX)")
def test_a_fifo_as_data_is_refused_without_blocking(tmp_path: Path, classifier: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "text.txt"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    (tmp_path / "lm.yaml").write_text(LM_RECIPE.format(train=fifo, output=tmp_path / "run"))
    fails(capsys, ["train", str(tmp_path / "lm.yaml")], says=(str(fifo), "FIFO", "regular file"))
    table = tmp_path / "test.tsv"
    os.mkfifo(table)
    fails(capsys, ["eval", str(classifier), str(table)], says=("test.tsv", "FIFO"))


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_device_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "lm.yaml").write_text(LM_RECIPE.format(train="/dev/zero", output=tmp_path / "run"))
    fails(capsys, ["train", str(tmp_path / "lm.yaml")], says=("/dev/zero", "character device"))


def test_a_text_file_over_the_limit_is_refused_and_one_under_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_text("x" * 1000 + "\n")
    with pytest.raises(LimitError, match="more than 1,000 bytes"):
        read_text_file(path, max_bytes=1000)
    assert read_text_file(path, max_bytes=1001) == "x" * 1000 + "\n"
    path.write_bytes(b"fine\nfine\n\xff\n")
    with pytest.raises(DataError, match=r"big.txt:3: not valid utf-8"):
        read_text_file(path)


def test_old_mac_line_endings_are_one_line(tmp_path: Path, classifier: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "test.tsv"
    path.write_bytes(b"text\tlabel\rgood film\tpos\rbad film\tneg\r")
    fails(capsys, ["eval", str(classifier), str(path)], says=("test.tsv:1", "carriage return", "LF or CRLF"))
    crlf = tmp_path / "crlf.tsv"
    crlf.write_bytes(b"text\tlabel\r\ngood film\tpos\r\nbad film\tneg\r\n")
    assert [example.label for example in read_examples(crlf)] == ["pos", "neg"]


def test_deeply_nested_json_lines_are_bad_rows(tmp_path: Path, classifier: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "test.jsonl"
    path.write_text('{"text": "good film", "label": "pos"}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    fails(capsys, ["eval", str(classifier), str(path)], says=("test.jsonl:2", "nested too deeply"))
    report = ReadReport()
    assert len(list(read_examples(path, on_error="skip", report=report))) == 1 and report.skipped == 1


def test_a_line_over_the_limit_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("multihead.data.reading.MAX_LINE_BYTES", 100)
    path = tmp_path / "test.jsonl"
    path.write_text('{"text": "short", "label": "pos"}\n{"text": "' + "w" * 200 + '", "label": "neg"}\n')
    with pytest.raises(DataError, match=r"test.jsonl:2: a line of more than 100 bytes"):
        list(read_examples(path))


def test_predict_file_at_a_folder_or_undecodable_is_one_line(tmp_path: Path, classifier: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    fails(capsys, ["predict", str(classifier), "--file", str(tmp_path)], says=("is a folder", "--file"))
    latin = tmp_path / "texts.txt"
    latin.write_bytes(b"caf\xe9 au lait\n")
    fails(capsys, ["predict", str(classifier), "--file", str(latin)], says=("texts.txt", "not UTF-8"))
    fails(capsys, ["predict", str(classifier), "--file", str(tmp_path / "absent.txt")], says="absent.txt")


def test_a_data_file_that_is_not_utf8_names_its_line(tmp_path: Path, classifier: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "test.tsv"
    path.write_bytes(b"text\tlabel\ngood film\tpos\nbad \xff film\tneg\n")
    fails(capsys, ["eval", str(classifier), str(path)], says=("test.tsv:3", "cannot decode"))


class _Recording:
    """A tokenizers backend stand-in that records the length of every text it is asked to encode."""

    def __init__(self, backend: object) -> None:
        self.backend, self.lengths = backend, []

    def encode(self, text: str, **options: object) -> object:
        self.lengths.append(len(text))
        return self.backend.encode(text, **options)  # type: ignore[attr-defined]

    def encode_batch(self, texts: list[str], **options: object) -> object:
        self.lengths += [len(text) for text in texts]
        return self.backend.encode_batch(texts, **options)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)


def test_a_huge_line_is_cut_before_tokenizing(tmp_path: Path, classifier: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from hostile import tokenizer
    from multihead.limits import text_cap

    words = tokenizer()
    huge = "a good film " * 1_000_000  # 12 MB: tokenized whole it would take gigabytes of offsets
    expected = words.encode(huge[:5000], max_length=16)
    recording = _Recording(words.backend)
    words._backend = recording  # type: ignore[assignment]
    assert words.encode(huge, max_length=16) == expected
    assert words.encode_batch([huge, "a bad film"], max_length=16)[0] == expected
    assert max(recording.lengths) == text_cap(16) < len(huge)
    path = tmp_path / "test.jsonl"
    path.write_text('{"text": "' + huge + '", "label": "pos"}\n{"text": "a bad film", "label": "neg"}\n')
    from multihead.cli import main

    assert main(["eval", str(classifier), str(path), "--json"]) == 0


def test_a_tokenizer_vocabulary_over_the_limit_is_one_line(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("a good film\n")
    fails(capsys, ["tokenizer", "train", str(corpus), "--kind", "bpe", "--vocab-size", "100000000000",
                   "--out", str(tmp_path / "tokenizer.json")], says=("vocab_size = 100,000,000,000", "limit"))
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "corpus.fifo")  # reading it would block
        fails(capsys, ["tokenizer", "train", str(tmp_path / "corpus.fifo"), "--out", str(tmp_path / "t.json")],
              says="corpus.fifo")
    assert not (tmp_path / "tokenizer.json").exists()
