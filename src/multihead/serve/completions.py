"""One generation request (``n`` choices of each prompt) on a scheduler: options checked against the limits,
choices submitted, token ids turned into text pieces, metrics kept, everything cancelled on any early exit.

``Generation.events()`` yields ``(choice, piece, finish_reason)`` as tokens arrive: ``piece`` is new text
(possibly empty), ``finish_reason`` is None until that choice ends (``stop`` or ``length``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from multihead.errors import MultiheadError
from multihead.generation.config import GenerationConfig
from multihead.generation.requests import Completion, RequestHandle
from multihead.generation.text_stream import TextStream
from multihead.serve.engines import TokenGenerator
from multihead.serve.errors import APIError
from multihead.serve.metrics import ServerMetrics
from multihead.serve.schemas import SamplingOptions
from multihead.serve.served import Generator
from multihead.serve.settings import ServeSettings

__all__ = ["Generation", "generation_config"]

_END = object()


def generation_config(options: SamplingOptions, model: Generator, *, max_new_tokens: int, choice: int
                      ) -> GenerationConfig:
    """The ``GenerationConfig`` of one choice: OpenAI's defaults (temperature 1 samples; 0 is greedy), the
    model's stop tokens, the request's stop strings; choice ``i`` of a seeded request samples with ``seed + i``."""
    temperature = 1.0 if options.temperature is None else options.temperature
    sample = temperature > 0
    seed = None if options.seed is None or not sample else (options.seed + choice) % (2**63)
    try:
        return GenerationConfig(
            max_new_tokens=max_new_tokens, do_sample=sample, temperature=temperature if sample else 1.0,
            top_p=options.top_p if sample and options.top_p not in (None, 1.0) else None,
            top_k=options.top_k if sample else None, repetition_penalty=options.repetition_penalty or 1.0,
            seed=seed, eos_id=model.tokenizer.eos_id, stop_token_ids=model.stop_ids,
            stop_strings=tuple(options.stop or ()))
    except ValueError as error:
        raise APIError(422, str(error).replace("GenerationConfig.", ""), code="invalid_value") from error


@dataclass(eq=False)
class Generation:
    """The choices of one request (``n`` per prompt, prompt by prompt), submitted to ``scheduler`` by ``start``.

    Attributes:
        prompts: each prompt's token ids.
        completions: each choice's ``Completion`` once it ended.
        streams: each choice's text so far.
    """

    model: Generator
    scheduler: TokenGenerator
    settings: ServeSettings
    metrics: ServerMetrics
    prompts: list[list[int]]
    options: SamplingOptions
    param: str = "messages"
    started: float = field(default_factory=time.perf_counter)
    handles: list[RequestHandle] = field(default_factory=list)
    streams: list[TextStream] = field(default_factory=list)
    completions: list[Completion | None] = field(default_factory=list)

    def start(self) -> None:
        """Check the limits and submit every choice (none is left running if one is refused)."""
        settings, options = self.settings, self.options
        if options.n * len(self.prompts) > settings.max_n:
            raise APIError(422, f"n: at most {settings.max_n} choices per request, got {options.n} for each of "
                           f"{len(self.prompts)} prompts", param="n", code="limit_exceeded")
        asked = options.requested_tokens
        if asked is not None and asked > settings.max_tokens:
            name = "max_completion_tokens" if options.max_completion_tokens is not None else "max_tokens"
            raise APIError(422, f"{name}: at most {settings.max_tokens} tokens per request, got {asked}", param=name,
                           code="limit_exceeded")
        limit = min(settings.max_prompt_tokens, self.scheduler.max_length - 1)
        plans = []
        for prompt in self.prompts:
            if len(prompt) > limit:
                raise APIError(400, f"the prompt has {len(prompt)} tokens; this server takes at most {limit}",
                               param=self.param, code="context_length_exceeded")
            room = self.scheduler.room(len(prompt))
            if asked is not None and asked > room:
                raise APIError(400, f"the prompt has {len(prompt)} tokens, which leaves room for {room} new tokens "
                               f"in the context of {self.scheduler.max_length}; max_tokens is {asked}",
                               param="max_tokens", code="context_length_exceeded")
            tokens = asked if asked is not None else min(settings.default_max_tokens, settings.max_tokens, room)
            plans += [(prompt, generation_config(options, self.model, max_new_tokens=tokens, choice=i))
                      for i in range(options.n)]
        try:
            for prompt, config in plans:
                self.handles.append(self.scheduler.submit(prompt, config))
        except MultiheadError:
            self.cancel()
            raise
        self.streams = [TextStream(self.model.decode, stop_strings=options.stop or ()) for _ in plans]
        self.completions = [None] * len(plans)
        self.metrics.tokens.labels(self.model.name, "prompt").inc(sum(len(p) for p, _ in plans))

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()

    async def events(self) -> AsyncIterator[tuple[int, str, str | None]]:
        """``(choice, new text, finish_reason or None)`` until every choice ended; cancels all on early exit.

        Raises:
            APIError: 504 when the request runs past ``request_timeout``.
        """
        queue: asyncio.Queue[tuple[int, object]] = asyncio.Queue()

        async def feed(index: int, handle: RequestHandle) -> None:
            try:
                async for token in handle:
                    queue.put_nowait((index, token))
                queue.put_nowait((index, _END))
            except Exception as error:
                queue.put_nowait((index, error))

        feeders = [asyncio.ensure_future(feed(i, handle)) for i, handle in enumerate(self.handles)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout
        last: list[float | None] = [None] * len(self.handles)
        open_choices = len(self.handles)
        try:
            while open_choices:
                try:
                    index, item = await asyncio.wait_for(queue.get(), max(deadline - loop.time(), 0.0))
                except asyncio.TimeoutError as error:
                    raise APIError(504, f"the request ran past the server's limit of {self.settings.request_timeout:g} "
                                   "s", code="timeout") from error
                if isinstance(item, BaseException):
                    raise item
                if item is _END:
                    open_choices -= 1
                    completion = self.handles[index].result(timeout=0)
                    self.completions[index] = completion
                    self.metrics.tokens.labels(self.model.name, "completion").inc(len(completion.tokens))
                    stream = self.streams[index]
                    piece = stream.finish()
                    reason = "stop" if stream.stopped else completion.finish_reason
                    yield index, piece, reason if reason != "cancelled" else "stop"
                    continue
                now = time.perf_counter()
                if last[index] is None:
                    self.metrics.first_token.labels(self.model.name).observe(now - self.started)
                else:
                    self.metrics.token_gap.labels(self.model.name).observe(now - last[index])
                last[index] = now
                assert isinstance(item, int)
                piece = self.streams[index].push(item)
                if piece:
                    yield index, piece, None
        finally:
            self.cancel()
            for feeder in feeders:
                feeder.cancel()

    @property
    def usage(self) -> dict[str, int]:
        generated = sum(len(c.tokens) for c in self.completions if c is not None)
        prompt = sum(len(p) for p in self.prompts)
        return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}

    def output_tokens(self) -> list[list[int]]:
        """Each choice's generated token ids (what ``/v1/attention`` shows)."""
        return [list(c.tokens) if c is not None else list(s.ids) for c, s in zip(self.completions, self.streams,
                                                                                      strict=True)]
