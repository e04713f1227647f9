"""Chat templates: a list of ``{"role", "content"}`` messages -> the prompt text a chat model was trained on.

A chat model ships its template as Jinja source (a GGUF file's ``tokenizer.chat_template``, a Hugging Face
folder's ``chat_template.jinja`` or ``tokenizer_config.json``; ``Tokenizer.chat_template`` holds it). It is rendered
the way ``transformers``' ``apply_chat_template`` renders it: in Jinja's immutable sandbox (a template from a model
file can read its arguments and nothing else), with ``trim_blocks`` and ``lstrip_blocks``, the special tokens
(``bos_token``, ``eos_token``, ...) and ``add_generation_prompt`` in its context, and the helpers templates use
(``raise_exception``, ``tojson``, ``strftime_now``, ``namespace``, ``{% generation %}`` blocks).

Example:
    >>> template = ChatTemplate.from_tokenizer(tokenizer)          # None when the model has no template
    >>> prompt = template.render([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    >>> ids = template.encode([{"role": "user", "content": "Hi"}])  # the same, as token ids
    >>> template.stop_ids                                            # end-of-turn tokens (and EOS): stop there
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from multihead.errors import CheckpointError, ConfigError
from multihead.tokenizers import Tokenizer

__all__ = ["ChatTemplate", "end_of_turn_ids", "render_chat_template"]

Message = Mapping[str, Any]
"""``{"role": "system" | "user" | "assistant" | ..., "content": text}`` (other keys pass through to the template)."""
_PROBE = "\u2063multihead-end-of-turn-probe\u2063"  # content no template alters, to find what follows a message


def render_chat_template(
    template: str, messages: Sequence[Message], *, add_generation_prompt: bool = False, **context: Any
) -> str:
    """Render ``messages`` with the Jinja chat ``template``.

    Args:
        template: the template's Jinja source.
        messages: the conversation, oldest first.
        add_generation_prompt: end with the header of an assistant turn (what a model continues from).
        context: more variables for the template: ``bos_token``, ``eos_token`` (and other ``<role>_token``
            strings), ``tools``, ``documents``, a template's own switches (``enable_thinking``, ...).

    Raises:
        CheckpointError: the template is not valid Jinja (it came from the model file).
        ConfigError: the template refused the messages (``raise_exception``) or failed on them.
    """
    import jinja2

    compiled = _compile(template)
    plain = [dict(message) for message in messages]
    for index, message in enumerate(plain):
        if not isinstance(message.get("role"), str):
            raise ConfigError(f"messages[{index}] has no string \"role\"; expected {{'role': ..., 'content': ...}}")
    try:
        return compiled.render(messages=plain, add_generation_prompt=add_generation_prompt, **context)
    except _RefusedError as error:
        raise ConfigError(f"the chat template refused the messages: {error}") from error
    except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError) as error:
        first = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise ConfigError(f"the chat template failed on these messages: {first}") from error


@dataclass(frozen=True)
class ChatTemplate:
    """A model's chat template with the special tokens of its tokenizer.

    Attributes:
        source: the Jinja source.
        tokenizer: the model's tokenizer (its special tokens fill ``bos_token``, ``eos_token``, ...).
        stop_ids: token ids that end an assistant's turn: the token the template writes right after an
            assistant message (``<|im_end|>`` in ChatML, ``<|eot_id|>`` in Llama 3), and the tokenizer's EOS.
    """

    source: str
    tokenizer: Tokenizer = field(repr=False)
    stop_ids: tuple[int, ...] = ()

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer, source: str | None = None) -> ChatTemplate | None:
        """The template ``source`` (default ``tokenizer.chat_template``) for ``tokenizer``; ``None`` without one."""
        source = source if source is not None else tokenizer.chat_template
        if source is None:
            return None
        return cls(source, tokenizer, end_of_turn_ids(source, tokenizer))

    @property
    def special_tokens(self) -> dict[str, str]:
        """``bos_token``, ``eos_token``, ... of the tokenizer, as the template sees them."""
        return {f"{role}_token": token for role, token in self.tokenizer.role_tokens().items()}

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = False, **context: Any) -> str:
        """The prompt text of ``messages`` (see :func:`render_chat_template`)."""
        return render_chat_template(self.source, messages, add_generation_prompt=add_generation_prompt,
                                    **{**self.special_tokens, **context})

    def encode(self, messages: Sequence[Message], *, add_generation_prompt: bool = True, **context: Any) -> list[int]:
        """Token ids of the rendered prompt; the template writes every special token itself, so the tokenizer adds
        none (as ``apply_chat_template(..., tokenize=True)``)."""
        text = self.render(messages, add_generation_prompt=add_generation_prompt, **context)
        return self.tokenizer.encode(text, add_special_tokens=False)


def end_of_turn_ids(template: str, tokenizer: Tokenizer) -> tuple[int, ...]:
    """The ids to stop generating at for ``template``: the special token that the template writes right after an
    assistant's message (found by rendering a probe conversation), then the tokenizer's EOS; sorted, no repeats.
    A template that refuses the probe yields EOS alone."""
    stops = set() if tokenizer.eos_id is None else {tokenizer.eos_id}
    probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": _PROBE}]
    context = {f"{role}_token": token for role, token in tokenizer.role_tokens().items()}
    try:
        text = render_chat_template(template, probe, **context)
    except (ConfigError, CheckpointError):
        return tuple(sorted(stops))
    after = text.split(_PROBE, 1)[1].lstrip() if _PROBE in text else ""
    specials = {token.content: index for index, token in tokenizer.backend.get_added_tokens_decoder().items()
                if token.special}
    match = max((token for token in specials if after.startswith(token)), key=len, default=None)
    if match is not None:
        stops.add(specials[match])
    return tuple(sorted(stops))


class _RefusedError(Exception):
    """``raise_exception`` called by a template."""


@lru_cache(maxsize=16)
def _compile(template: str) -> Any:
    """The compiled ``template`` in a fresh immutable sandbox (cached: chat turns reuse one template)."""
    try:
        import jinja2
        from jinja2.ext import Extension, loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError as error:
        raise ConfigError("rendering chat templates needs jinja2: pip install jinja2") from error

    class Generation(Extension):
        """``{% generation %}...{% endgeneration %}`` (marks assistant text for training masks): rendered as is."""

        tags = {"generation"}  # noqa: RUF012 (jinja's API)

        def parse(self, parser: Any) -> Any:
            line = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(line)

        def _render(self, caller: Any) -> str:
            return caller()

    class Namespace(jinja2.utils.Namespace):
        """Jinja's ``namespace()`` (attributes set inside loops), refusing names that start with an underscore."""

        def __setitem__(self, name: str, value: Any) -> None:
            if str(name).startswith("_"):
                raise _RefusedError(f"a namespace attribute may not start with an underscore, got {name!r}")
            super().__setitem__(name, value)

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                extensions=[Generation, loopcontrols])
    environment.filters["tojson"] = _tojson
    environment.globals.update(raise_exception=_raise, strftime_now=_strftime_now, namespace=Namespace)
    try:
        return environment.from_string(template)
    except jinja2.TemplateSyntaxError as error:
        raise CheckpointError(f"the chat template is not valid Jinja: line {error.lineno}: {error.message}") from error


def _raise(message: str) -> None:
    raise _RefusedError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    """JSON without Jinja's HTML escaping (templates print tool schemas with it)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)
