"""A tiny random chat model for the chat tests: a byte-level BPE tokenizer with ChatML's special tokens, a
random ``DecoderLM`` over its vocabulary, and a ChatML template rendered with jinja2 (as transformers does)."""

from __future__ import annotations

import functools

import jinja2
from tiny_models import tiny_lm

from multihead import DecoderLM
from multihead.chat import Message
from multihead.tokenizers import Tokenizer

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}<|im_start|>assistant\n")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TEXTS = ["What is the capital of France?", "The capital of France is Paris.", "naïve café, déjà vu, 日本語",
         "Tell me a story about a dog and a cat.", "Once upon a time there was a small robot."]


@functools.cache
def chat_tokenizer() -> Tokenizer:
    return Tokenizer.train_from_texts(TEXTS * 20, kind="byte_bpe", vocab_size=320, special_tokens=SPECIALS)


def chat_model(*, max_length: int = 256, seed: int = 0) -> DecoderLM:
    return tiny_lm(vocab_size=chat_tokenizer().vocab_size, max_length=max_length, seed=seed)


@functools.cache
def _template() -> jinja2.Template:
    return jinja2.Environment(keep_trailing_newline=True).from_string(CHATML)


def render(messages: list[Message]) -> str:
    return _template().render(messages=messages)


def end_of_turn() -> int:
    token = chat_tokenizer().token_to_id("<|im_end|>")
    assert token is not None
    return token
