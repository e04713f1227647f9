"""``TextStream``: the pieces join to the full decode, never show half a character, never show a stop string."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead.generation.text_stream import TextStream
from multihead.tokenizers import Tokenizer

TEXTS = ["naïve café, déjà vu", "日本語のテキストです", "emoji 🙂🙃🎉 done", "plain ascii text here", "Grüße aus Köln"]


@functools.cache
def trained() -> Tokenizer:
    return Tokenizer.train_from_texts(TEXTS * 10, kind="byte_bpe", vocab_size=300, special_tokens=["<pad>"])


@pytest.fixture
def tokenizer() -> Tokenizer:
    return trained()


def pieces_of(stream: TextStream, ids: list[int]) -> list[str]:
    return [stream.push(token) for token in ids] + [stream.finish()]


@settings(deadline=None, max_examples=30)
@given(text=st.text(alphabet=st.sampled_from(list("aé 日本🙂ü,K")), min_size=1, max_size=30))
def test_pieces_join_to_the_decoded_text_and_never_split_a_character(text: str) -> None:
    tokenizer = trained()
    ids = tokenizer.encode(text, add_special_tokens=False)
    stream = TextStream(tokenizer.decode)
    pieces = pieces_of(stream, ids)
    assert "".join(pieces) == tokenizer.decode(ids) == text == stream.text
    assert all("\ufffd" not in piece for piece in pieces)


def test_a_character_split_over_tokens_waits_for_its_last_byte(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("a 🎉", add_special_tokens=False)
    assert any("\ufffd" in tokenizer.decode([token]) for token in ids)  # the emoji really spans tokens
    pieces = pieces_of(TextStream(tokenizer.decode), ids)
    assert "🎉" in pieces and "".join(pieces) == "a 🎉"


def test_stop_strings_are_never_shown(tokenizer: Tokenizer) -> None:
    text = "plain ascii text here"
    ids = tokenizer.encode(text, add_special_tokens=False)
    stream = TextStream(tokenizer.decode, stop_strings=["xyz", "text"])
    pieces = pieces_of(stream, ids)
    assert "".join(pieces) == stream.text == "plain ascii " and stream.stopped
    assert stream.push(ids[0]) == ""


def test_text_that_only_looked_like_a_stop_string_is_shown_in_the_end(tokenizer: Tokenizer) -> None:
    ids = tokenizer.encode("plain ascii te", add_special_tokens=False)
    stream = TextStream(tokenizer.decode, stop_strings=["text"])
    shown = "".join(stream.push(token) for token in ids)
    assert shown == "plain ascii " and not stream.stopped  # "te" might begin "text"
    assert stream.finish() == "te" and stream.text == "plain ascii te"


def test_bad_stop_strings_are_refused(tokenizer: Tokenizer) -> None:
    with pytest.raises(ValueError, match="stop_strings"):
        TextStream(tokenizer.decode, stop_strings="text")
