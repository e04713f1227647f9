"""The files Hugging Face keeps beside ``tokenizer.json``: ``tokenizer_config.json`` (which token plays which role:
``bos_token``, ``eos_token``, ...; and the ``chat_template``) and ``chat_template.jinja`` (the template alone,
which wins over the JSON key, as in ``transformers``). Reading parses JSON and text only; a template is never run
here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from multihead.atomic import write_text_atomic
from multihead.errors import CheckpointError

__all__ = ["CHAT_TEMPLATE_FILE", "ROLES", "TOKENIZER_CONFIG_FILE", "read_tokenizer_config", "tokenizer_config_values"]

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
ROLES = ("bos", "eos", "unk", "pad", "cls", "sep", "mask")
"""Roles a special token may play; ``tokenizer_config.json`` names them ``<role>_token``."""
MAX_BYTES = 16 << 20
"""Larger ``tokenizer_config.json`` or ``chat_template.jinja`` files are refused unread."""


def read_tokenizer_config(directory: Path) -> tuple[dict[str, str], str | None]:
    """``(roles, chat_template)`` from the files in ``directory``: role -> token name for every ``<role>_token``
    that names a token (a string or an ``AddedToken``-style object), and the chat template or ``None``.

    Raises:
        CheckpointError: a file that is not UTF-8, not a JSON object, too large, or a template that is not text.
    """
    config: dict[str, Any] = {}
    path = directory / TOKENIZER_CONFIG_FILE
    if path.is_file():
        try:
            config = json.loads(_text(path))
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from error
        if not isinstance(config, dict):
            raise CheckpointError(f"{path}: expected a JSON object, got {type(config).__name__}")
    roles = {role: name for role in ROLES if isinstance(name := _token_name(config.get(f"{role}_token")), str)}
    template = config.get("chat_template")
    if isinstance(template, list):  # several named templates: the default one
        template = next((entry.get("template") for entry in template
                         if isinstance(entry, dict) and entry.get("name") == "default"), None)
    if template is not None and not isinstance(template, str):
        raise CheckpointError(f"{path}: chat_template must be a string, got {type(template).__name__}")
    if (directory / CHAT_TEMPLATE_FILE).is_file():
        template = _text(directory / CHAT_TEMPLATE_FILE)
    return roles, template or None


def tokenizer_config_values(roles: Mapping[str, str], chat_template: str | None) -> dict[str, Any]:
    """The ``tokenizer_config.json`` keys for ``roles`` and ``chat_template`` (what ``transformers`` reads)."""
    values: dict[str, Any] = {f"{role}_token": roles[role] for role in ROLES if role in roles}
    if chat_template is not None:
        values["chat_template"] = chat_template
    return values


def write_tokenizer_config(directory: Path, values: Mapping[str, Any]) -> Path:
    """Write ``values`` as ``directory/tokenizer_config.json`` (atomically) and return its path."""
    path = directory / TOKENIZER_CONFIG_FILE
    write_text_atomic(path, json.dumps(dict(values), indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return path


def _text(path: Path) -> str:
    if path.stat().st_size > MAX_BYTES:
        raise CheckpointError(f"{path}: {path.stat().st_size:,} bytes; at most {MAX_BYTES:,} are read")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error


def _token_name(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None
