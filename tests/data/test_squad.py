"""SQuAD-format readers: JSON and JSON lines, the project's SQuAD split, and bad files named by file and line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from multihead.data import DataError, data_root
from multihead.data.squad import QAAnswer, read_qa_file, squad, squad_references

CONTEXT = "Marie Curie was born in Warsaw in 1867. She won two Nobel Prizes."


def squad_document(qas: list[dict], context: str = CONTEXT) -> dict:
    return {"version": "1.1", "data": [{"title": "Curie", "paragraphs": [{"context": context, "qas": qas}]}]}


def write(path: Path, value: object, *, indent: int | None = None) -> Path:
    path.write_text(json.dumps(value, indent=indent), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def splits() -> dict:
    try:
        root = data_root()
    except FileNotFoundError as error:
        pytest.skip(f"no data root: {error}")
    if not (root / "squad" / "dev-v1.1.json.gz").is_file():
        pytest.skip(f"{root / 'squad'} is absent (the SQuAD v1.1 files of data/README.md)")
    return squad(root)


def test_reads_squad_json_with_titles_answers_and_places(tmp_path: Path) -> None:
    document = squad_document([
        {"id": "q1", "question": "Where was she born?", "answers": [{"text": "Warsaw", "answer_start": 24}]},
        {"id": "q2", "question": "When?", "answers": [{"text": "1867", "answer_start": 34},
                                                     {"text": "in 1867", "answer_start": 31}]},
    ])
    path = write(tmp_path / "tiny.json.gz", None)
    path.write_bytes(gzip.compress(json.dumps(document).encode()))
    first, second = read_qa_file(path)
    assert (first.id, first.question, first.context, first.title) == ("q1", "Where was she born?", CONTEXT, "Curie")
    assert first.answers == (QAAnswer("Warsaw", 24),)
    assert second.answers == (QAAnswer("1867", 34), QAAnswer("in 1867", 31))
    assert second.source == f"{path}: data[0].paragraphs[0].qas[1]"
    assert squad_references([first, second]) == {"q1": ["Warsaw"], "q2": ["1867", "in 1867"]}


def test_reads_json_lines_in_both_answer_layouts(tmp_path: Path) -> None:
    lines = [{"context": CONTEXT, "question": "Where?", "answers": [{"text": "Warsaw", "answer_start": 24}]},
             {"id": "x", "context": CONTEXT, "question": "When?", "answers": {"text": ["1867"], "answer_start": [34]}}]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n", encoding="utf-8")
    first, second = read_qa_file(path)
    assert (first.id, first.source, first.answers) == ("line 1", f"{path}:1", (QAAnswer("Warsaw", 24),))
    assert (second.id, second.answers) == ("x", (QAAnswer("1867", 34),))


def test_unlabelled_questions_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "ask.jsonl"
    path.write_text(json.dumps({"context": CONTEXT, "question": "Where?"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:1: no 'answers' key"):
        read_qa_file(path)
    (example,) = read_qa_file(path, require_answers=False)
    assert example.answers == ()


@pytest.mark.parametrize(("record", "message"), [
    ({"question": "Where?", "answers": []}, r"no 'context' key; expected the passage"),
    ({"context": CONTEXT, "answers": []}, r"no 'question' key"),
    ({"context": CONTEXT, "question": "Where?", "answers": [{"text": "Warsaw", "answer_start": 23}]},
     r"answers\[0\]: answer_start 23 gives ' Warsa', not the answer text 'Warsaw'; expected context\[answer_start"),
    ({"context": CONTEXT, "question": "Where?", "answers": [{"text": "Warsaw", "answer_start": 900}]},
     r"answer_start 900 gives outside the context"),
    ({"context": CONTEXT, "question": "Where?", "answers": [{"text": "Warsaw", "answer_start": "24"}]},
     r"'answer_start' is string '24'; expected the character offset"),
    ({"context": CONTEXT, "question": "Where?", "answers": [{"answer_start": 24}]}, r"no 'text' key"),
    ({"context": CONTEXT, "question": "Where?", "answers": {"text": ["a", "b"], "answer_start": [0]}},
     r"2 texts but 1 starts"),
    ({"context": CONTEXT, "question": "Where?", "answers": []}, r"'answers' is empty"),
])
def test_bad_json_lines_name_the_file_and_line(tmp_path: Path, record: dict, message: str) -> None:
    good = {"context": CONTEXT, "question": "Where?", "answers": [{"text": "Warsaw", "answer_start": 24}]}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"^{path}:2: .*{message}") as caught:
        read_qa_file(path)
    assert "\n" not in str(caught.value)


def test_bad_squad_json_names_the_line_and_place(tmp_path: Path) -> None:
    qas = [{"id": "ok", "question": "Where?", "answers": [{"text": "Warsaw", "answer_start": 24}]},
           {"id": "wr\u00f6ng", "question": "When?", "answers": [{"text": "1867", "answer_start": 33}]}]
    path = write(tmp_path / "pretty.json", squad_document(qas), indent=2)  # the id written as "wr\u00f6ng"
    line = next(n for n, text in enumerate(path.read_text().splitlines(), start=1) if "wr\\u00f6ng" in text)
    with pytest.raises(DataError, match=rf"^{path}:{line}: data\[0\]\.paragraphs\[0\]\.qas\[1\]\.answers\[0\]: "
                                        r"answer_start 33 gives ' 186'"):
        read_qa_file(path)
    compact = write(tmp_path / "compact.json", squad_document([{"id": "q", "answers": []}]))
    with pytest.raises(DataError, match=rf"^{compact}: data\[0\]\.paragraphs\[0\]\.qas\[0\]: no 'question' key"):
        read_qa_file(compact)
    no_context = write(tmp_path / "nocontext.json", {"data": [{"paragraphs": [{"qas": []}]}]})
    with pytest.raises(DataError, match=r"data\[0\]\.paragraphs\[0\]: no 'context' key"):
        read_qa_file(no_context)


@pytest.mark.parametrize(("text", "message"), [
    ('{"data": [', r":1: invalid JSON"),
    ('{"version": "1.1"}', r"expected a SQuAD object with a 'data' list"),
    ("", r"empty file"),
])
def test_files_that_are_not_squad(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        read_qa_file(path)


def test_duplicate_ids_and_missing_files(tmp_path: Path) -> None:
    qa = {"id": "same", "question": "Where?", "answers": [{"text": "Warsaw", "answer_start": 24}]}
    path = write(tmp_path / "dup.json", squad_document([qa, qa]))
    with pytest.raises(DataError, match="question id 'same' appears twice"):
        read_qa_file(path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_qa_file(tmp_path / "absent.json")


def test_project_split_of_the_real_squad(splits: dict) -> None:
    sizes = {name: len(examples) for name, examples in splits.items()}
    assert sizes == {"train": 10_565, "validation": 1_312, "test": 10_570}
    assert sum(len(e.answers) for e in splits["test"]) == 34_726
    train_titles = {e.title for e in splits["train"]}
    validation_titles = {e.title for e in splits["validation"]}
    assert len(validation_titles) == 4 and len(train_titles) == 40 and not train_titles & validation_titles
    assert len({e.title for e in splits["test"]}) == 48
    assert all(len(e.answers) == 1 for e in splits["train"])
