"""``ChatTemplate``: a served model's chat messages rendered into its prompt text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from multihead.errors import ConfigError

__all__ = ["ChatTemplate"]

@dataclass(frozen=True)
class ChatTemplate:
    """A model's chat template: a Jinja template (Hugging Face's convention, rendered in a sandbox) or, when
    ``source`` is None, plain ChatML turns.

    Attributes:
        source: the Jinja text of the template (from a GGUF file or ``tokenizer_config.json``), or None.
        bos_token / eos_token: the strings a template may refer to.
    """

    source: str | None = None
    bos_token: str = ""
    eos_token: str = ""

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = True) -> str:
        """The prompt text for ``messages`` (each with ``role`` and ``content``), ending where the assistant
        speaks next."""
        if self.source is None:
            turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
            return turns + ("<|im_start|>assistant\n" if add_generation_prompt else "")
        return _render_jinja(self.source, messages, add_generation_prompt=add_generation_prompt,
                             bos_token=self.bos_token, eos_token=self.eos_token)


def _render_jinja(source: str, messages: Sequence[Mapping[str, str]], **context: object) -> str:
    """Render a chat template in Jinja's immutable sandbox (a template from a model file runs no Python)."""
    try:
        from multihead.chat_template import render_chat_template  # the project's renderer, when present
    except ImportError:
        render_chat_template = None
    if render_chat_template is not None:
        return render_chat_template(source, [dict(m) for m in messages], **context)
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise ConfigError(f"the model's chat template refused the messages: {message}")

    environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    environment.globals["raise_exception"] = raise_exception
    try:
        return environment.from_string(source).render(messages=[dict(m) for m in messages], **context)
    except jinja2.TemplateError as error:
        raise ConfigError(f"the model's chat template failed: {error}") from error
