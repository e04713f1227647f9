"""BBC News Summary: the sentence splitter, undoing the summary joins, the fixed split and bad-file errors."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from multihead.data import DataError, data_root
from multihead.data.summaries import (
    Article,
    bbc_news_summary,
    lead,
    read_summary_file,
    split_of_id,
    split_sentences,
    split_summary,
    summary_labels,
    summary_match_rate,
)


@pytest.fixture(scope="module")
def splits() -> dict[str, list[Article]]:
    try:
        root = data_root()
    except FileNotFoundError as error:
        pytest.skip(f"no data root: {error}")
    if not (root / "bbc-news-summary" / "bbc-news-summary.jsonl.gz").is_file():
        pytest.skip(f"{root / 'bbc-news-summary'} is absent; set MULTIHEAD_DATA (multihead data list)")
    return bbc_news_summary(root)


# --------------------------------------------------------------------------------------------- splitter
@pytest.mark.parametrize(("text", "expected"), [
    ("Profits rose 2.5% to $1.13bn. Sales fell.", ["Profits rose 2.5% to $1.13bn.", "Sales fell."]),
    ("Mr. Forsyth spoke. Dr. Kelly and St. Louis agreed.", ["Mr. Forsyth spoke.", "Dr. Kelly and St. Louis agreed."]),
    ("President George W. Bush and J. Allard met. They talked.",
     ["President George W. Bush and J. Allard met.", "They talked."]),
    ("It ended in World War I. But the BBC said so.", ["It ended in World War I.", "But the BBC said so."]),
    ('"It is great," he said. "We won." Then we left.', ['"It is great," he said.', '"We won."', "Then we left."]),
    ("He said (in brief.) Then left.", ["He said (in brief.)", "Then left."]),
    ("Growth of 0.1%... in the third quarter. Next.", ["Growth of 0.1%... in the third quarter.", "Next."]),
    ("From his days in Wham! through to now. Yes?  No!", ["From his days in Wham!", "through to now.", "Yes?", "No!"]),
    ("He lives at No. 10 now. No. That is wrong.", ["He lives at No. 10 now.", "No.", "That is wrong."]),
    ("Apple sold 10m iPods. iPod sales rose.", ["Apple sold 10m iPods.", "iPod sales rose."]),
    ("A line without a stop\n\nNext  with   spaces.", ["A line without a stop", "Next with spaces."]),
    ("", []),
])
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(("summary", "expected"), [
    ("Sales rose 2% to $11.1bn.For the full year, profits grew 6.4%.",
     ["Sales rose 2% to $11.1bn.", "For the full year, profits grew 6.4%."]),
    ('He said "yes."The end came.', ['He said "yes."', "The end came."]),
    ('Markets rose."I think so," he said.The dollar fell.',
     ["Markets rose.", '"I think so," he said.', "The dollar fell."]),
    ('He said: "Well, it is fine.""Who is going?"', ['He said: "Well, it is fine."', '"Who is going?"']),
    ("The U.S.A. team won.Then U.K. fans cheered.", ["The U.S.A. team won.", "Then U.K. fans cheered."]),
    ("Mr. Blair spoke.50 Cent sang.", ["Mr. Blair spoke.", "50 Cent sang."]),
])
def test_split_summary_undoes_the_joins(summary: str, expected: list[str]) -> None:
    assert split_summary(summary) == expected


def test_split_summary_follows_the_article_where_punctuation_is_missing() -> None:
    article = split_sentences("In 2003, the economy expanded by 1.3%\nThe economy is benefiting. Prices fell.")
    summary = "In 2003, the economy expanded by 1.3%The economy is benefiting.Prices fell."
    assert split_summary(summary) == ["In 2003, the economy expanded by 1.3%The economy is benefiting.", "Prices fell."]
    assert split_summary(summary, article) == article


def test_labels_and_lead() -> None:
    article = Article(id="001", category="tech", title="T", sentences=["A.", "B.", "C.", "D."],
                      summary_sentences=["C.", "A."], source="x:1")
    assert summary_labels(article) == [True, False, True, False]
    assert lead(article) == ["A.", "B.", "C."] and lead(article, 9) == article.sentences
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        lead(article, 0)
    assert [split_of_id(i) for i in ("010", "015", "001", "016", "002", "019")] == [
        "test", "test", "validation", "validation", "train", "train"]


# --------------------------------------------------------------------------------------------- the data set
def test_split_counts_and_sources(splits: dict[str, list[Article]]) -> None:
    assert {name: len(articles) for name, articles in splits.items()} == {
        "train": 1333, "validation": 448, "test": 444}
    assert all(a.id[-1] in "05" for a in splits["test"]) and all(a.id[-1] in "16" for a in splits["validation"])
    assert Counter(a.category for a in splits["test"]) == {
        "business": 102, "sport": 102, "politics": 83, "tech": 80, "entertainment": 77}
    keys = [(a.category, a.id) for articles in splits.values() for a in articles]
    assert len(keys) == len(set(keys)) == 2225
    first = splits["train"][0]
    assert first.title == "Dollar gains on Greenspan speech" and first.source.endswith("bbc-news-summary.jsonl.gz:2")
    assert first.sentences[0].startswith("The dollar has hit its highest level against the euro")


def test_summary_sentences_match_article_sentences(splits: dict[str, list[Article]]) -> None:
    rate = summary_match_rate(a for articles in splits.values() for a in articles)
    # measured: 99.69% of 17,570 summary sentences, 98.2% of articles (95.0% by punctuation alone)
    assert rate["sentences"] > 0.995 and rate["articles"] > 0.98
    assert 17_000 < rate["count"] < 18_000


# --------------------------------------------------------------------------------------------- bad files
def _write(tmp_path: Path, lines: list[str]) -> Path:
    folder = tmp_path / "bbc-news-summary"
    folder.mkdir()
    path = folder / "bbc-news-summary.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


GOOD = json.dumps({"category": "tech", "id": "005", "article": "Title\n\nOne here. Two there.",
                   "summary": "Two there."})


def test_reads_a_small_file(tmp_path: Path) -> None:
    _write(tmp_path, [GOOD, "", json.dumps({**json.loads(GOOD), "id": "006"})])
    splits = bbc_news_summary(tmp_path)
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [0, 1, 1]
    article = splits["test"][0]
    assert (article.title, article.sentences, article.summary_sentences) == ("Title", ["One here.", "Two there."],
                                                                           ["Two there."])
    assert article.source.endswith(".jsonl.gz:1") and splits["validation"][0].source.endswith(".jsonl.gz:3")


@pytest.mark.parametrize(("line", "message"), [
    ('{"category": "tech", "id": "001",', r"bbc-news-summary\.jsonl\.gz:2: invalid JSON"),
    ('["a list"]', r"\.jsonl\.gz:2: expected a JSON object"),
    ('{"category": "tech", "id": "001", "article": "T\\n\\nA."}', r"\.jsonl\.gz:2: missing key 'summary'"),
    ('{"category": "tech", "id": 1, "article": "T\\n\\nA.", "summary": "A."}',
     r"\.jsonl\.gz:2: 'id' must be a non-empty string"),
    ('{"category": "tech", "id": "x1", "article": "T\\n\\nA.", "summary": "A."}', r":2: 'id' must be a number"),
    ('{"category": "tech", "id": "001", "article": "Only a title", "summary": "A."}', r":2: .*no body"),
])
def test_bad_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    _write(tmp_path, [GOOD, line])
    with pytest.raises(DataError, match=message):
        bbc_news_summary(tmp_path)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"bbc-news-summary\.jsonl\.gz: no such file"):
        bbc_news_summary(tmp_path)
    path = _write(tmp_path, [GOOD] * 50)
    path.write_bytes(path.read_bytes()[:40])  # cut the gzip stream short
    with pytest.raises(DataError, match="corrupt gzip data"):
        read_summary_file(path)
