"""Open a chat model by name: a model directory, a ``.gguf`` file or ``package:NAME``, with its chat template.

The template is the model's own (a GGUF file's ``tokenizer.chat_template``, a directory's
``chat_template.jinja`` or ``tokenizer_config.json``); a model without one (our small trained language
models) gets ChatML turns. A reply ends at the template's end-of-turn token or at EOS.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from multihead.chat.session import ChatSession, Message
from multihead.errors import CheckpointError, ConfigError
from multihead.models.decoder import DecoderLM
from multihead.tokenizers import Tokenizer

__all__ = ["CHATML", "ChatModel", "load_chat_model", "open_chat"]

CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
"""The template of models that bring none."""
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>")
"""Tokens that end an assistant's turn in the common templates (ChatML, Llama 3, Gemma, Phi)."""
PACKAGE_PREFIX = "package:"


@dataclass
class ChatModel:
    """A chat model ready for ``ChatSession``: ``template`` is the Jinja source, ``stop_token_ids`` its
    end-of-turn tokens, ``name`` what the user called it."""

    model: DecoderLM
    tokenizer: Tokenizer
    template: str
    stop_token_ids: tuple[int, ...]
    name: str

    def render(self, messages: list[Message]) -> str:
        """The prompt text of ``messages``, ending with the assistant's generation prompt."""
        return _render(self.template, messages, self.tokenizer)

    def session(self, **options: Any) -> ChatSession:
        """A new ``ChatSession`` (``options``: ``system``, ``generation``, ``max_length``, ``on_notice``)."""
        return ChatSession(self.model, self.tokenizer, render=self.render, stop_token_ids=self.stop_token_ids,
                           **options)


def load_chat_model(spec: str | Path) -> ChatModel:
    """Load ``spec``: a multihead or Hugging Face model directory, a ``.gguf`` file, or ``package:NAME`` (an
    installed package shipping a ``model/`` folder or a ``.gguf`` file; found, never imported)."""
    path = _resolve(str(spec))
    if path.is_file():
        model, tokenizer, template = _load_gguf(path)
    else:
        model, tokenizer, template = _load_directory(path)
    if not isinstance(model, DecoderLM):
        raise ConfigError(f"{spec}: holds a {type(model).__name__}; chat needs a language model (DecoderLM)")
    if tokenizer is None:
        raise CheckpointError(f"{spec}: no tokenizer; expected tokenizer.json beside the model")
    template = template or CHATML
    stops = tuple(token for name in END_OF_TURN_TOKENS if name in template
                  and (token := tokenizer.token_to_id(name)) is not None)
    return ChatModel(model.eval(), tokenizer, template, stops, str(spec))


def open_chat(spec: str | Path, **options: Any) -> ChatSession:
    """``load_chat_model(spec).session(**options)``."""
    return load_chat_model(spec).session(**options)


def _resolve(spec: str) -> Path:
    """The file or directory ``spec`` names; ``package:NAME`` -> the package's ``model/`` folder or ``.gguf`` file."""
    if spec.startswith(PACKAGE_PREFIX):
        name = spec[len(PACKAGE_PREFIX):]
        try:
            found = importlib.util.find_spec(name) if name and "." not in name else None
        except (ImportError, ValueError):
            found = None
        locations = list(found.submodule_search_locations or []) if found is not None else []
        if not locations:
            raise FileNotFoundError(f"{spec}: no installed package {name!r} (pip install {name.replace('_', '-')})")
        folder = Path(locations[0])
        if (folder / "model" / "config.json").is_file():
            return folder / "model"
        files = sorted(folder.glob("*.gguf"))
        if len(files) != 1:
            raise FileNotFoundError(f"{spec}: {folder} holds {len(files)} .gguf files and no model/ folder; "
                                    "expected one model")
        return files[0]
    path = Path(spec).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix == ".gguf"):
        return path
    raise FileNotFoundError(f"{path}: not a model directory or a .gguf file")


def _load_directory(path: Path) -> tuple[Any, Tokenizer | None, str | None]:
    from multihead.interop.pretrained import load_pretrained

    loaded = load_pretrained(path)
    template = None
    if (path / "chat_template.jinja").is_file():
        template = (path / "chat_template.jinja").read_text(encoding="utf-8")
    elif (path / "tokenizer_config.json").is_file():
        try:
            value = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8")).get("chat_template")
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{path / 'tokenizer_config.json'}: line {error.lineno}: not valid JSON "
                                  f"({error.msg})") from error
        template = value if isinstance(value, str) else None
    return loaded.model, loaded.tokenizer, template


def _load_gguf(path: Path) -> tuple[Any, Tokenizer | None, str | None]:
    try:
        from multihead.interop.gguf import load_gguf  # type: ignore[import-not-found]
    except ImportError as error:
        raise CheckpointError(f"{path}: reading .gguf files needs multihead.interop.gguf, not in this "
                              "version") from error
    loaded = load_gguf(path)
    return loaded.model, loaded.tokenizer, getattr(loaded, "chat_template", None)


def _render(template: str, messages: list[Message], tokenizer: Tokenizer) -> str:
    """Render a Jinja chat template in an immutable sandbox (a template from a model file runs no Python)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def refuse(message: str) -> None:
        raise ConfigError(f"the chat template refused the messages: {message}")

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    environment.globals["raise_exception"] = refuse
    special = {"bos_token": tokenizer.bos_id, "eos_token": tokenizer.eos_id}
    names = {key: (tokenizer.id_to_token(value) or "") if value is not None else "" for key, value in special.items()}
    try:
        return environment.from_string(template).render(messages=messages, add_generation_prompt=True, **names)
    except jinja2.TemplateError as error:
        raise ConfigError(f"the chat template failed: {error}") from error
