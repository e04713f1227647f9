"""``ChatSession``: a conversation with a chat-tuned ``DecoderLM``, turn by turn, streamed.

Each turn renders the whole conversation with the model's chat template (system prompt, the turns that
fit, the new user message, the assistant's generation prompt) and generates until the template's
end-of-turn token, EOS, a stop string or ``max_new_tokens``.

The key/value cache is kept between turns: the new prompt is compared token by token with what the
cache holds, the cache is cut back to the common prefix and only the rest is run. A reply's own tokens
usually survive into the next turn's prompt, so a turn costs its new message, not the whole
conversation. When the conversation no longer fits the context (prompt + ``max_new_tokens``), the
oldest turns leave the model's view (the transcript keeps them) and a notice says so.

Shape legend: ``T`` new tokens, ``V`` vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from multihead.atomic import write_text_atomic
from multihead.errors import ConfigError, LimitError, MultiheadError
from multihead.generation.api import _decoding, _generator
from multihead.generation.config import GenerationConfig
from multihead.generation.sampling import choose_tokens, penalise_repetitions
from multihead.generation.text_stream import TextStream
from multihead.models.decoder import DecoderLM
from multihead.tokenizers import Tokenizer

__all__ = ["ChatSession", "Message", "Render", "TurnStats"]

Message = dict[str, str]
"""``{"role": "system" | "user" | "assistant", "content": text}``."""
Render = Callable[[list[Message]], str]
"""Messages -> the prompt text, ending with the assistant's generation prompt."""

PREFILL_CHUNK = 512
"""Most prompt tokens run in one forward (bounds the attention scores' memory)."""


@dataclass(frozen=True)
class TurnStats:
    """The last turn: ``prompt_tokens`` (the rendered conversation), ``reused_tokens`` (already in the cache,
    not run again), ``generated_tokens``, ``finish_reason`` (``stop``, ``length`` or ``interrupted``) and
    ``dropped_turns`` (old turns out of the model's view so far)."""

    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int
    finish_reason: str
    dropped_turns: int


class ChatSession:
    """A conversation with ``model``.

    Args:
        model: a chat-tuned language model.
        tokenizer: its tokenizer (special tokens of the template are in its vocabulary).
        render: the chat template: messages -> prompt text with the assistant's generation prompt.
        stop_token_ids: the template's end-of-turn tokens; the tokenizer's EOS always stops too.
        system: the system prompt, or ``None``.
        generation: default decoding settings of every turn (per-turn options override them); default
            greedy with ``max_new_tokens=512``.
        max_length: context in tokens, prompt and reply (default the model's, at most 4096); the cache is
            preallocated at this size.
        on_notice: called with each notice (old turns dropped) as well as keeping it in ``notices``.
    """

    def __init__(
        self,
        model: DecoderLM,
        tokenizer: Tokenizer,
        *,
        render: Render,
        stop_token_ids: Sequence[int] = (),
        system: str | None = None,
        generation: GenerationConfig | None = None,
        max_length: int | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        if not isinstance(model, DecoderLM):
            raise ConfigError(f"ChatSession needs a DecoderLM, got {type(model).__name__}")
        context = min(model.config.max_length, 4096) if max_length is None else max_length
        if isinstance(context, bool) or not isinstance(context, int) or not 2 <= context <= model.config.max_length:
            raise ConfigError(f"ChatSession max_length must be an integer in 2..{model.config.max_length} "
                              f"(the model's context), got {max_length!r}")
        stops = {int(token) for token in stop_token_ids}
        if tokenizer.eos_id is not None:
            stops.add(tokenizer.eos_id)
        if not stops:
            raise ConfigError("ChatSession needs a token that ends a reply: give stop_token_ids (the template's "
                              "end-of-turn token) or a tokenizer with an EOS token")
        self.model, self.tokenizer, self.render = model, tokenizer, render
        self.system = system
        self.generation = generation or GenerationConfig(max_new_tokens=512)
        self.generation = self.generation.replace(stop_token_ids=tuple(sorted(stops | set(self.generation.stop_ids))))
        self.max_length = context
        self.on_notice = on_notice
        self.turns: list[tuple[str, str]] = []  # (user, assistant) pairs, all of them
        self.first_turn = 0  # turns before this one are out of the model's view
        self.notices: list[str] = []
        self.last_turn: TurnStats | None = None
        with torch.inference_mode():
            self._cache = model.make_cache(batch_size=1, max_length=context)
        self._cached: list[int] = []  # the tokens whose keys and values the cache holds

    @property
    def messages(self) -> list[Message]:
        """The whole transcript: the system prompt (if any), then every turn."""
        return self._messages(0)

    def send(self, text: str, **options: Any) -> str:
        """The assistant's reply to ``text``; ``options`` are ``GenerationConfig`` fields (``max_new_tokens``,
        ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``seed``, ``repetition_penalty``,
        ``stop_strings``) for this turn."""
        return "".join(self.stream(text, **options))

    def stream(self, text: str, **options: Any) -> Iterator[str]:
        """The reply to ``text`` piece by piece (never half a character). The turn enters the history when
        the reply ends, or, if the caller stops reading, with the text shown so far."""
        if not isinstance(text, str):
            raise ConfigError(f"a chat message must be a str, got {type(text).__name__}")
        try:
            config = self.generation.replace(**options)
        except TypeError as error:  # an unknown option
            raise ConfigError(f"unknown chat option in {sorted(options)}; expected GenerationConfig fields") from error
        except ValueError as error:  # a bad value
            raise ConfigError(str(error)) from error
        if config.num_beams != 1 or config.num_return_sequences != 1:
            raise ConfigError("a chat turn decodes one reply (greedy or sampled); num_beams and "
                              "num_return_sequences must be 1")
        prompt = self._fit(text, config.max_new_tokens)
        return self._reply(text, prompt, config)

    def reset(self) -> None:
        """Forget the turns (the system prompt stays; its cached keys are reused)."""
        self.turns, self.first_turn, self.notices, self.last_turn = [], 0, [], None

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the transcript as JSON (``messages`` as the OpenAI API spells them); an existing file is
        kept unless ``overwrite``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise MultiheadError(f"{path}: already exists; choose another name (or pass overwrite=True)")
        if path.is_dir():
            raise MultiheadError(f"{path}: is a directory; expected a file name for the JSON transcript")
        transcript = {"messages": self.messages, "turns_out_of_context": self.first_turn}
        write_text_atomic(path, json.dumps(transcript, indent=2, ensure_ascii=False) + "\n")
        return path

    def _messages(self, first_turn: int, new: str | None = None) -> list[Message]:
        messages = [{"role": "system", "content": self.system}] if self.system else []
        for user, assistant in self.turns[first_turn:]:
            messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        if new is not None:
            messages.append({"role": "user", "content": new})
        return messages

    def _encode(self, messages: list[Message]) -> list[int]:
        text = self.render(messages)
        if not isinstance(text, str):
            raise ConfigError(f"the chat template must render a str, got {type(text).__name__}")
        return self.tokenizer.encode(text, add_special_tokens=False)

    def _fit(self, text: str, max_new_tokens: int) -> list[int]:
        """The prompt ids of the conversation plus ``text``, dropping the oldest turns until the reply fits."""
        first = self.first_turn
        ids = self._encode(self._messages(first, text))
        while len(ids) + max_new_tokens > self.max_length and first < len(self.turns):
            first += 1
            ids = self._encode(self._messages(first, text))
        if len(ids) >= self.max_length:
            raise LimitError(f"the message{' and the system prompt' if self.system else ''} take {len(ids)} tokens; "
                             f"the context holds {self.max_length}; send a shorter message")
        if first > self.first_turn:
            dropped = first - self.first_turn
            self._notice(f"dropped the oldest {dropped} turn{'s' * (dropped > 1)} from the model's view to fit the "
                         f"context of {self.max_length} tokens ({first} of {len(self.turns)} turns out of view)")
            self.first_turn = first
        return ids

    def _notice(self, text: str) -> None:
        self.notices.append(text)
        if self.on_notice is not None:
            self.on_notice(text)

    def _reply(self, text: str, prompt: list[int], config: GenerationConfig) -> Iterator[str]:
        stream = TextStream(self.tokenizer.decode, stop_strings=config.stop_strings)
        generated: list[int] = []
        reason, reused = "interrupted", 0
        budget = min(config.max_new_tokens, self.max_length - len(prompt))
        try:
            with _decoding(self.model):
                reused = self._reuse(prompt)
                logits = self._run(prompt[reused:])
                generator = _generator(self.model, config)
            for step in range(budget):
                with _decoding(self.model):
                    token = self._choose(logits, config, prompt + generated, generator)
                if token in config.stop_ids:
                    reason = "stop"
                    break
                generated.append(token)
                piece = stream.push(token)
                if piece:
                    yield piece
                if stream.stopped:
                    reason = "stop"
                    break
                if step == budget - 1:
                    reason = "length"
                    break
                with _decoding(self.model):
                    logits = self._run([token])
            rest = stream.finish()
            if rest:
                yield rest
        finally:
            self.turns.append((text, stream.text))
            self.last_turn = TurnStats(prompt_tokens=len(prompt), reused_tokens=reused,
                                       generated_tokens=len(generated), finish_reason=reason,
                                       dropped_turns=self.first_turn)

    def _reuse(self, prompt: list[int]) -> int:
        """Cut the cache back to its common prefix with ``prompt`` (keeping one token to run); returns its length."""
        keep = 0
        limit = min(len(self._cached), len(prompt) - 1)
        while keep < limit and self._cached[keep] == prompt[keep]:
            keep += 1
        self._cache.truncate(keep)
        del self._cached[keep:]
        return keep

    def _run(self, ids: list[int]) -> Tensor:
        """Append ``ids`` to the cache, in chunks; returns the next-token logits ``(1, V)`` after the last."""
        logits: Tensor | None = None
        for start in range(0, len(ids), PREFILL_CHUNK):
            chunk = ids[start : start + PREFILL_CHUNK]
            try:
                ids_chunk = torch.tensor([chunk], device=self._device())  # (1, T)
                logits = self.model(ids_chunk, cache=self._cache, last_only=True)[:, -1]  # (1, V)
            except BaseException:  # an interrupted forward may have written some layers: forget them
                self._cache.truncate(len(self._cached))
                raise
            self._cached += chunk
        assert logits is not None
        return logits  # (1, V)

    def _choose(self, logits: Tensor, config: GenerationConfig, history: list[int],
                generator: torch.Generator | None) -> int:
        scores = logits.float()  # (1, V)
        if config.repetition_penalty != 1.0:
            seen = torch.tensor([history], device=scores.device)  # (1, L)
            scores = penalise_repetitions(scores, seen, None, config.repetition_penalty)
        return int(choose_tokens(scores, config, generator)[0])

    def _device(self) -> torch.device:
        return self._cache.self_attention[0].keys.device
