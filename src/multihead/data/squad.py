"""Extractive question answering data: SQuAD-format JSON and JSON lines readers, and the project's SQuAD split.

A SQuAD file is one JSON object: ``data`` -> articles (``title``, ``paragraphs``) -> paragraphs (``context``,
``qas``) -> questions (``id``, ``question``, ``answers``: ``text`` and the character offset ``answer_start``).
A JSON lines file holds one question an object: ``context``, ``question``, ``answers`` (a list of
``{"text", "answer_start"}``, or Hugging Face datasets' ``{"text": [...], "answer_start": [...]}``) and an
optional ``id`` (default ``"line N"``). Every answer is checked: ``context[answer_start:][:len(text)]`` must be
``text``. A bad file raises :class:`~multihead.data.errors.DataError` naming the file, the line (the question's
line when the file is pretty-printed) and the question's place (``data[3].paragraphs[0].qas[5]``).
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multihead.data.datasets import data_root
from multihead.data.errors import DataError
from multihead.errors import LimitError

__all__ = ["MAX_FILE_BYTES", "QAAnswer", "QAExample", "read_qa_file", "squad", "squad_references"]

MAX_FILE_BYTES = 1 << 30
"""Largest (decompressed) file the reader accepts: 1 GiB, 30 times the official SQuAD v1.1 train set."""
_FOLDER = "squad"
_TRAIN, _DEV = "train-v1.1-du-part.json.gz", "dev-v1.1.json.gz"


@dataclass(frozen=True)
class QAAnswer:
    """A reference answer: its text and the offset of its first character in the context."""

    text: str
    start: int


@dataclass(frozen=True)
class QAExample:
    """One question about one context.

    Attributes:
        id: the question's id (unique within a file).
        question, context: the texts.
        answers: the reference answers (several in SQuAD's dev set; none for unlabelled questions).
        title: the article's title ("" for JSON lines).
        source: where it came from, ``"path:line"`` or ``"path: data[i].paragraphs[j].qas[k]"``.
    """

    id: str
    question: str
    context: str
    answers: tuple[QAAnswer, ...]
    title: str = ""
    source: str = ""


def _read_text(path: Path) -> str:
    """The whole file as text (gzip recognised by its magic bytes), bounded by :data:`MAX_FILE_BYTES`."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected a SQuAD JSON or JSON lines file")
    with path.open("rb") as handle:
        compressed = handle.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rb") if compressed else path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"corrupt gzip data ({error}); expected a complete file", path=path) from None
    if len(raw) > MAX_FILE_BYTES:
        raise LimitError(f"{path}: more than {MAX_FILE_BYTES:,} bytes; expected a SQuAD file of at most that size")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise DataError(f"not valid UTF-8 ({error.reason} at byte {error.start})", path=path, line=line) from None


def _type(value: Any) -> str:
    return "null" if value is None else {dict: "object", list: "array", str: "string"}.get(type(value), "number")


class _Where:
    """Builds error locations: the file, the line of a question (found by its id) and its JSON path."""

    def __init__(self, path: Path, text: str, *, line: int | None = None) -> None:
        self.path, self.text, self.line, self.multiline = path, text, line, text.count("\n") > 1

    def line_of(self, qid: Any) -> int | None:
        if self.line is not None:
            return self.line
        if not self.multiline or not isinstance(qid, str) or not qid:
            return None
        positions = [self.text.find(json.dumps(qid, ensure_ascii=ascii)) for ascii in (False, True)]
        position = min((p for p in positions if p >= 0), default=-1)
        return None if position < 0 else self.text.count("\n", 0, position) + 1

    def error(self, message: str, place: str, qid: Any = None) -> DataError:
        return DataError(f"{place}: {message}" if place else message, path=self.path, line=self.line_of(qid))


def _string(record: Mapping[str, Any], key: str, what: str, where: _Where, place: str, qid: Any = None,
            *, empty: bool = False) -> str:
    if key not in record:
        raise where.error(f"no {key!r} key; expected {what}", place, qid)
    value = record[key]
    if not isinstance(value, str) or (not empty and not value.strip()):
        raise where.error(f"{key!r} is {_type(value)} {str(value)[:40]!r}; expected {what}", place, qid)
    return value


def _answers(raw: Any, context: str, where: _Where, place: str, qid: Any) -> tuple[QAAnswer, ...]:
    """Check and convert an ``answers`` value (a list of objects, or an object of two parallel lists)."""
    if isinstance(raw, Mapping) and isinstance(raw.get("text"), list) and isinstance(raw.get("answer_start"), list):
        if len(raw["text"]) != len(raw["answer_start"]):
            raise where.error(f"'answers' has {len(raw['text'])} texts but {len(raw['answer_start'])} starts; "
                              f"expected one answer_start per text", place, qid)
        raw = [{"text": t, "answer_start": s} for t, s in zip(raw["text"], raw["answer_start"], strict=True)]
    if not isinstance(raw, list):
        raise where.error(f"'answers' is {_type(raw)}; expected a list of {{\"text\", \"answer_start\"}} objects",
                          place, qid)
    answers = []
    for number, answer in enumerate(raw):
        at = f"{place}.answers[{number}]" if place else f"answers[{number}]"
        if not isinstance(answer, Mapping):
            raise where.error(f"{_type(answer)}; expected an object with 'text' and 'answer_start'", at, qid)
        text = _string(answer, "text", "the answer's text, a non-empty string", where, at, qid)
        start = answer.get("answer_start")
        if isinstance(start, bool) or not isinstance(start, int):
            raise where.error(f"'answer_start' is {_type(start)} {start!r}; expected the character offset of the "
                              f"answer in the context, a whole number", at, qid)
        found = context[start:start + len(text)] if 0 <= start <= len(context) else None
        if found != text:
            seen = "outside the context" if found is None else f"{found[:60]!r}"
            raise where.error(f"answer_start {start} gives {seen}, not the answer text {text[:60]!r}; expected "
                              f"context[answer_start:answer_start + len(text)] == text", at, qid)
        answers.append(QAAnswer(text=text, start=start))
    return tuple(answers)


def _squad_json(document: Any, where: _Where, require_answers: bool) -> list[QAExample]:
    if not isinstance(document, Mapping) or not isinstance(document.get("data"), list):
        raise DataError("expected a SQuAD object with a 'data' list of articles (or JSON lines: one question "
                        "an object)", path=where.path)
    examples: list[QAExample] = []
    for a, article in enumerate(document["data"]):
        place = f"data[{a}]"
        if not isinstance(article, Mapping) or not isinstance(article.get("paragraphs"), list):
            raise where.error("expected an article object with a 'paragraphs' list", place)
        title = article.get("title", "")
        for p, paragraph in enumerate(article["paragraphs"]):
            at = f"{place}.paragraphs[{p}]"
            if not isinstance(paragraph, Mapping):
                raise where.error(f"{_type(paragraph)}; expected a paragraph object with 'context' and 'qas'", at)
            context = _string(paragraph, "context", "the paragraph's text, a non-empty string", where, at)
            if not isinstance(paragraph.get("qas"), list):
                raise where.error(f"'qas' is {_type(paragraph.get('qas'))}; expected a list of questions", at)
            for q, qa in enumerate(paragraph["qas"]):
                examples.append(_question(qa, context, str(title), where, f"{at}.qas[{q}]", require_answers))
    return examples


def _question(qa: Any, context: str, title: str, where: _Where, place: str, require_answers: bool,
              default_id: str | None = None) -> QAExample:
    if not isinstance(qa, Mapping):
        raise where.error(f"{_type(qa)}; expected a question object with 'id', 'question' and 'answers'", place)
    qid = qa.get("id", default_id)
    if not isinstance(qid, str | int) or isinstance(qid, bool) or str(qid) == "":
        raise where.error(f"'id' is {_type(qid)} {qid!r}; expected the question's id, a non-empty string", place)
    question = _string(qa, "question", "the question, a non-empty string", where, place, qid)
    if "answers" not in qa and require_answers:
        raise where.error("no 'answers' key; expected the reference answers (text and answer_start)", place, qid)
    answers = _answers(qa.get("answers", []), context, where, place, qid)
    if require_answers and not answers:
        raise where.error("'answers' is empty; expected at least one reference answer", place, qid)
    line = where.line_of(qid)
    source = f"{where.path}:{line}" if line else f"{where.path}"
    source += f": {place}" if place else ""
    return QAExample(id=str(qid), question=question, context=context, answers=answers, title=title, source=source)


def _json_lines(text: str, path: Path, require_answers: bool) -> list[QAExample]:
    examples = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"invalid JSON ({error.msg} at column {error.colno}); expected one JSON object a line",
                            path=path, line=number) from None
        except RecursionError:
            raise DataError("JSON nested too deeply; expected one flat question object", path=path,
                            line=number) from None
        where = _Where(path, "", line=number)
        if not isinstance(record, Mapping):
            raise where.error(f"{_type(record)}; expected an object with 'context', 'question' and 'answers'", "")
        context = _string(record, "context", "the passage to answer from, a non-empty string", where, "")
        examples.append(_question(record, context, "", where, "", require_answers, default_id=f"line {number}"))
    return examples


def read_qa_file(path: str | os.PathLike[str], *, require_answers: bool = True) -> list[QAExample]:
    """Every question of a SQuAD JSON file or a JSON lines file (gzip allowed), in file order.

    Args:
        path: the file; a ``.jsonl`` name, or text whose first line is a whole JSON object with a ``context``,
            means JSON lines.
        require_answers: every question must have at least one answer (training and scoring); False reads
            unlabelled questions too (answering a file).

    Raises:
        FileNotFoundError: no such file.
        DataError: not JSON, a missing key, a duplicate id, or an ``answer_start`` that does not point at its
            answer's text; the message names the file, line and question.
        LimitError: the file is larger than :data:`MAX_FILE_BYTES`.
    """
    path = Path(path)
    text = _read_text(path)
    if not text.strip():
        raise DataError("empty file; expected SQuAD JSON or JSON lines questions", path=path)
    if _is_json_lines(path, text):
        examples = _json_lines(text, path, require_answers)
    else:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise DataError(f"invalid JSON ({error.msg} at column {error.colno}); expected a SQuAD file",
                            path=path, line=error.lineno) from None
        except RecursionError:
            raise DataError("JSON nested too deeply; expected a SQuAD file", path=path) from None
        examples = _squad_json(document, _Where(path, text), require_answers)
    seen: dict[str, str] = {}
    for example in examples:
        if example.id in seen:
            raise DataError(f"question id {example.id!r} appears twice ({seen[example.id]} and {example.source}); "
                            f"expected unique ids", path=path)
        seen[example.id] = example.source
    if not examples:
        raise DataError("no questions; expected at least one", path=path)
    return examples


def _is_json_lines(path: Path, text: str) -> bool:
    name = path.name.removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson")):
        return True
    first = text.lstrip().split("\n", 1)[0]
    try:
        record = json.loads(first)
    except (json.JSONDecodeError, RecursionError):
        return False
    return isinstance(record, Mapping) and "context" in record and "data" not in record


def squad(root: str | os.PathLike[str] | None = None) -> dict[str, list[QAExample]]:
    """SQuAD v1.1 as the project splits it (``squad/`` under the data root, see ``data/README.md``).

    ``train`` and ``validation`` come from ``train-v1.1-du-part.json.gz`` (44 whole articles of the official
    train set): the articles whose 0-based position is 9 modulo 10 are validation (4 articles, 1,312 questions),
    the rest train (10,565); ``test`` is the whole official dev set (48 articles, 10,570 questions, up to several
    answers each).
    """
    folder = (data_root() if root is None else Path(root)) / _FOLDER
    train_path = folder / _TRAIN
    document = json.loads(_read_text(train_path))
    if not isinstance(document, Mapping) or not isinstance(document.get("data"), list):
        raise DataError("expected a SQuAD object with a 'data' list", path=train_path)
    examples = _squad_json(document, _Where(train_path, ""), True)
    article_of = {}
    for number, article in enumerate(document["data"]):
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                article_of[str(qa["id"])] = number
    return {"train": [e for e in examples if article_of[e.id] % 10 != 9],
            "validation": [e for e in examples if article_of[e.id] % 10 == 9],
            "test": read_qa_file(folder / _DEV)}


def squad_references(examples: Sequence[QAExample]) -> dict[str, list[str]]:
    """Question id -> reference answer texts, as the official script reads them."""
    return {example.id: [answer.text for answer in example.answers] for example in examples}
