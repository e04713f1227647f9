"""Readers: good files, each kind of bad row (with the file and line in the message), skip mode, gzip, laziness."""

from __future__ import annotations

import gzip
import json
import re
import time
import tracemalloc
from pathlib import Path

import pytest

from multihead.data import (
    DataError,
    Example,
    ReadReport,
    infer_format,
    read_delimited,
    read_examples,
    read_folder,
    read_jsonl,
    read_lines,
)


def write(path: Path, content: str | bytes, *, compress: bool = False) -> Path:
    data = content.encode("utf-8") if isinstance(content, str) else content
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


# ---- delimited ----------------------------------------------------------------------------------------------------


def test_csv_reads_quoted_fields_and_names_the_starting_line(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", 'id,text,label\n1,"hello, world",pos\n\n2,"two\nlines",neg\n3,plain,pos\n')
    examples = list(read_delimited(path, text_column="text", label_column="label"))
    assert examples == [
        Example("hello, world", "pos", f"{path}:2"),
        Example("two\nlines", "neg", f"{path}:4"),
        Example("plain", "pos", f"{path}:6"),
    ]


def test_tsv_infers_tab_and_does_not_quote(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tsv", 'sentence\tlabel\nhe said " hi\t1\nbye\t0\n')
    examples = list(read_delimited(path, text_column="sentence", label_column="label"))
    assert [(e.text, e.label) for e in examples] == [('he said " hi', "1"), ("bye", "0")]
    assert examples[1].source == f"{path}:3"


def test_unlabelled_delimited_and_bom_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "\ufefftext\r\nfirst\r\nsecond\r\n")
    assert [e.text for e in read_delimited(path, text_column="text")] == ["first", "second"]
    assert all(e.label is None for e in read_delimited(path, text_column="text"))


def test_missing_column_names_it_and_lists_the_header(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "sentence,label\nhi,1\n")
    with pytest.raises(DataError) as caught:
        next(read_delimited(path, text_column="text", label_column="label"))
    message = str(caught.value)
    assert message.startswith(f"{path}:1: ")
    assert "'text'" in message and "['sentence', 'label']" in message


@pytest.mark.parametrize(
    ("content", "line", "expected"),
    [
        ("text,label\na,1\nb,2,extra\n", 3, "expected 2 ','-separated fields (as in the header), got 3"),
        ("text,label\na,1\n  ,2\n", 3, "empty text in column 'text'"),
        ("text,label\na,1\nb,\n", 3, "empty label in column 'label'"),
    ],
)
def test_bad_rows_name_file_line_and_expectation(tmp_path: Path, content: str, line: int, expected: str) -> None:
    path = write(tmp_path / "bad.csv", content)
    reader = read_delimited(path, text_column="text", label_column="label")
    assert next(reader).text == "a"
    with pytest.raises(DataError) as caught:
        next(reader)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert expected in str(caught.value)
    assert caught.value.path == str(path) and caught.value.line == line


def test_undecodable_bytes_name_the_exact_line(tmp_path: Path) -> None:
    data = b"text,label\nfine,1\n\"multi\nline\",2\ncaf\xe9,3\nok,4\n"
    path = write(tmp_path / "latin.csv", data)
    with pytest.raises(DataError) as caught:
        list(read_delimited(path, text_column="text", label_column="label"))
    assert str(caught.value).startswith(f"{path}:5: ")
    assert "e9" in str(caught.value) and "utf-8" in str(caught.value)
    latin = list(read_delimited(path, text_column="text", label_column="label", encoding="latin-1"))
    assert latin[2].text == "café"


def test_skip_mode_counts_bad_rows(tmp_path: Path) -> None:
    data = b"text,label\na,1\nb,2,3\n,4\n\xff\xfe,5\nc,6\n"
    path = write(tmp_path / "mixed.csv", data)
    report = ReadReport()
    examples = list(read_delimited(path, text_column="text", label_column="label", on_error="skip", report=report))
    assert [e.text for e in examples] == ["a", "c"]
    assert report.skipped == 3
    assert [p.split(": ")[0] for p in report.problems] == [f"{path}:3", f"{path}:4", f"{path}:5"]
    assert report.summary().startswith("skipped 3 bad rows")


def test_skip_without_report_warns(tmp_path: Path) -> None:
    path = write(tmp_path / "mixed.csv", "text\na\n\"\"\nb\n")
    with pytest.warns(UserWarning, match="skipped 1 bad rows"):
        assert len(list(read_delimited(path, text_column="text", on_error="skip"))) == 2


def test_report_keeps_twenty_problems(tmp_path: Path) -> None:
    path = write(tmp_path / "many.jsonl", "not json\n" * 30)
    report = ReadReport()
    assert list(read_jsonl(path, text_key="text", on_error="skip", report=report)) == []
    assert report.skipped == 30 and len(report.problems) == 20
    assert "and 10 more" in report.summary()


def test_empty_csv_and_options_checked_when_made(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.csv", "")
    with pytest.raises(DataError, match=r"empty\.csv: empty file; expected a header row"):
        list(read_delimited(empty, text_column="text"))
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        read_delimited(tmp_path / "missing.csv", text_column="text")
    with pytest.raises(ValueError, match="on_error"):
        read_delimited(empty, text_column="text", on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ASCII-compatible"):
        read_lines(empty, encoding="utf-16")
    with pytest.raises(ValueError, match="delimiter"):
        read_delimited(write(tmp_path / "a.dat", "x"), text_column="text")


# ---- JSON lines ---------------------------------------------------------------------------------------------------


def test_jsonl_good_with_label_types(tmp_path: Path) -> None:
    rows = [{"text": "a", "label": "x"}, {"text": "b", "label": 7}, {"text": "c", "label": True}]
    path = write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]))
    examples = list(read_jsonl(path, text_key="text", label_key="label"))
    assert [(e.text, e.label, e.source) for e in examples] == [
        ("a", "x", f"{path}:1"), ("b", "7", f"{path}:2"), ("c", "true", f"{path}:4")]
    assert [e.label for e in read_jsonl(path, text_key="text")] == [None, None, None]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"text": "unterminated', "invalid JSON"),
        ('["text", "x"]', "expected a JSON object, got an array"),
        ('{"body": "x", "label": "y"}', "missing key 'text' for the text; the object has keys ['body', 'label']"),
        ('{"text": 5, "label": "y"}', "'text' is a number; expected a string for the text"),
        ('{"text": " ", "label": "y"}', "empty text under 'text'"),
        ('{"text": "x"}', "missing key 'label' for the label"),
        ('{"text": "x", "label": 1.5}', "'label' is a number; expected a string, an integer or a boolean"),
        ('{"text": "x", "label": null}', "'label' is null"),
    ],
)
def test_jsonl_bad_lines(tmp_path: Path, line: str, expected: str) -> None:
    path = write(tmp_path / "bad.jsonl", '{"text": "ok", "label": "y"}\n' + line + "\n")
    with pytest.raises(DataError) as caught:
        list(read_jsonl(path, text_key="text", label_key="label"))
    assert str(caught.value).startswith(f"{path}:2: ")
    assert expected in str(caught.value)


def test_jsonl_undecodable_line_and_skip(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", b'{"text": "a"}\n{"text": "b"}\n{"text": "\xc3("}\n{"text": "d"}\n')
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: cannot decode byte c3"):
        list(read_jsonl(path, text_key="text"))
    report = ReadReport()
    assert [e.text for e in read_jsonl(path, text_key="text", on_error="skip", report=report)] == ["a", "b", "d"]
    assert report.skipped == 1


# ---- plain text and folders ---------------------------------------------------------------------------------------


def test_lines_skip_blank_lines_and_keep_numbers(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", "\ufefffirst\r\n\n   \nsecond  \nthird")
    examples = list(read_lines(path, label="pos"))
    assert [(e.text, e.label, e.source) for e in examples] == [
        ("first", "pos", f"{path}:1"), ("second  ", "pos", f"{path}:4"), ("third", "pos", f"{path}:5")]


def test_lines_undecodable(tmp_path: Path) -> None:
    path = write(tmp_path / "a.txt", b"one\ntwo\nthr\x80ee\n")
    with pytest.raises(DataError, match=rf"^{re.escape(str(path))}:3: cannot decode byte 80 at byte 4 of the line"):
        list(read_lines(path))


def test_folder_reads_sorted_classes_and_files(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write(root / "sport" / "2.txt", "b")
    write(root / "sport" / "1.txt", "a")
    write(root / "sport" / "3.txt.gz", "c", compress=True)
    write(root / "sport" / "notes.md", "ignored")
    write(root / "arts" / "9.txt", "z\n")
    write(root / "README.txt", "not in a class folder")
    examples = list(read_folder(root))
    assert [(e.label, e.text, Path(e.source).name) for e in examples] == [
        ("arts", "z\n", "9.txt"), ("sport", "a", "1.txt"), ("sport", "b", "2.txt"), ("sport", "c", "3.txt.gz")]


def test_folder_bad_files(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    write(root / "a" / "1.txt", "fine")
    bad = write(root / "a" / "2.txt", b"title\n\nprice \xa315\n")
    empty = write(root / "b" / "1.txt", " \n")
    with pytest.raises(DataError) as caught:
        list(read_folder(root))
    assert str(caught.value).startswith(f"{bad}:3: cannot decode byte a3")
    assert [e.text for e in read_folder(root, fallback_encoding="cp1252", on_error="skip", report=ReadReport())][
        1] == "title\n\nprice £15\n"
    report = ReadReport()
    assert len(list(read_folder(root, on_error="skip", report=report))) == 1
    assert report.skipped == 2 and report.problems[1].startswith(f"{empty}: empty file")
    with pytest.raises(DataError, match="no class sub-folders"):
        read_folder(root / "a")


# ---- gzip, dispatch, laziness -------------------------------------------------------------------------------------


def test_gzip_is_read_by_every_file_reader(tmp_path: Path) -> None:
    lines = write(tmp_path / "a.txt.gz", "x\ny\n", compress=True)
    jsonl = write(tmp_path / "a.jsonl.gz", '{"t": "x"}\n', compress=True)
    tsv = write(tmp_path / "a.tsv.gz", "t\tl\nx\t1\n", compress=True)
    sneaky = write(tmp_path / "plain-name.txt", "hidden\n", compress=True)
    assert [e.text for e in read_lines(lines)] == ["x", "y"]
    assert [e.text for e in read_jsonl(jsonl, text_key="t")] == ["x"]
    assert [(e.text, e.label) for e in read_delimited(tsv, text_column="t", label_column="l")] == [("x", "1")]
    assert [e.text for e in read_lines(sneaky)] == ["hidden"]


def test_corrupt_gzip_raises(tmp_path: Path) -> None:
    data = gzip.compress(b"line\n" * 10000)
    path = write(tmp_path / "cut.txt.gz", data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.txt\.gz:\d+: cannot read the file"):
        list(read_lines(path))


def test_read_examples_dispatches_by_suffix(tmp_path: Path) -> None:
    csv_path = write(tmp_path / "a.csv", "text,label\nx,1\n")
    tsv_path = write(tmp_path / "a.tsv.gz", "body\ttag\nx\t1\n", compress=True)
    jsonl_path = write(tmp_path / "a.jsonl", '{"text": "x", "label": 1}\n')
    txt_path = write(tmp_path / "a.txt", "x\n")
    folder = tmp_path / "folder"
    write(folder / "1" / "a.txt", "x")
    assert [infer_format(p) for p in (csv_path, tsv_path, jsonl_path, txt_path, folder)] == [
        "csv", "tsv", "jsonl", "txt", "folder"]
    assert next(read_examples(csv_path)).label == "1"
    assert next(read_examples(tsv_path, text_field="body", label_field="tag")).label == "1"
    assert next(read_examples(jsonl_path)).label == "1"
    assert next(read_examples(txt_path)).label is None
    assert next(read_examples(folder)).label == "1"
    assert next(read_examples(write(tmp_path / "data.log", "x\n"), format="txt")).text == "x"
    with pytest.raises(ValueError, match=r"data\.log: cannot tell the format"):
        read_examples(tmp_path / "data.log")


def test_readers_are_lazy(tmp_path: Path) -> None:
    """A bad row after the first is not seen until it is reached: nothing is read ahead."""
    cases = [
        (read_lines, write(tmp_path / "a.txt", b"good\n\xff\n"), {}),
        (read_jsonl, write(tmp_path / "a.jsonl", '{"t": "good"}\nbroken\n'), {"text_key": "t"}),
        (read_delimited, write(tmp_path / "a.csv", "t\ngood\nx,y\n"), {"text_column": "t"}),
    ]
    for reader, path, options in cases:
        iterator = reader(path, **options)
        assert next(iterator).text == "good"
        with pytest.raises(DataError):
            next(iterator)


def test_first_example_of_a_large_file_is_quick_and_small(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    line = (json.dumps({"text": "w " * 45, "label": "x"}) + "\n").encode()
    with open(path, "wb") as file:
        file.write(line * (50_000_000 // len(line)))
    assert path.stat().st_size > 49_000_000
    tracemalloc.start()
    start = time.perf_counter()
    first = next(read_examples(path))
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert first.label == "x"
    assert elapsed < 0.5 and peak < 2_000_000, (elapsed, peak)
