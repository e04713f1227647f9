"""Open a chat model by name: a model directory, a ``.gguf`` file or ``package:NAME``, with its chat template.

The model and tokenizer load through :func:`multihead.interop.pretrained.load_pretrained`; the template is the
tokenizer's own (a GGUF file's ``tokenizer.chat_template``, a directory's ``chat_template.jinja`` or
``tokenizer_config.json``), rendered by :mod:`multihead.chat_template`. A model without one (our small trained
language models) gets ChatML turns. A reply ends at the template's end-of-turn token or at EOS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multihead.chat.session import ChatSession, Message
from multihead.chat_template import ChatTemplate
from multihead.errors import CheckpointError, ConfigError
from multihead.models.decoder import DecoderLM
from multihead.tokenizers import Tokenizer

__all__ = ["CHATML", "ChatModel", "load_chat_model", "open_chat"]

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
"""The template of models that bring none."""


@dataclass
class ChatModel:
    """A chat model ready for ``ChatSession``: its ``template`` (a ``ChatTemplate``, or Jinja source made into one
    for ``tokenizer``), the template's end-of-turn tokens and EOS in ``stop_token_ids``, and ``name``, what the
    user called it."""

    model: DecoderLM
    tokenizer: Tokenizer
    template: ChatTemplate
    stop_token_ids: tuple[int, ...]
    name: str

    def __post_init__(self) -> None:
        if isinstance(self.template, str):
            template = ChatTemplate.from_tokenizer(self.tokenizer, self.template)
            assert template is not None
            self.template = template

    def render(self, messages: list[Message]) -> str:
        """The prompt text of ``messages``, ending with the assistant's generation prompt."""
        return self.template.render(messages, add_generation_prompt=True)

    def session(self, **options: Any) -> ChatSession:
        """A new ``ChatSession`` (``options``: ``system``, ``generation``, ``max_length``, ``on_notice``)."""
        return ChatSession(self.model, self.tokenizer, render=self.render, stop_token_ids=self.stop_token_ids,
                           **options)


def load_chat_model(spec: str | Path) -> ChatModel:
    """Load ``spec``: a multihead or Hugging Face model directory, a ``.gguf`` file, or ``package:NAME`` (an
    installed package shipping a ``model/`` folder or a ``.gguf`` file; found, never imported)."""
    from multihead.interop.pretrained import load_pretrained

    loaded = load_pretrained(spec)
    if not isinstance(loaded.model, DecoderLM):
        raise ConfigError(f"{spec}: holds a {type(loaded.model).__name__}; chat needs a language model (DecoderLM)")
    if loaded.tokenizer is None:
        raise CheckpointError(f"{spec}: no tokenizer; expected tokenizer.json beside the model")
    template = (ChatTemplate.from_tokenizer(loaded.tokenizer)
                or ChatTemplate.from_tokenizer(loaded.tokenizer, CHATML))
    assert template is not None
    return ChatModel(loaded.model.eval(), loaded.tokenizer, template, template.stop_ids, str(spec))


def open_chat(spec: str | Path, **options: Any) -> ChatSession:
    """``load_chat_model(spec).session(**options)``."""
    return load_chat_model(spec).session(**options)
