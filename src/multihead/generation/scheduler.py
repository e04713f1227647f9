"""``Scheduler``: continuous batching of ``DecoderLM`` generation requests in one background thread.

Each step runs ONE batched forward over every sequence that is decoding, each in its own row of a
preallocated ``SlotCache`` (``slots`` rows of ``max_length`` positions: memory is bounded up front).
Requests wait in a bounded queue; a newcomer takes the next free row and its prompt is prefilled in
chunks of at most ``prefill_chunk`` tokens, one chunk per step between decoding steps (so a long prompt
never stalls the others for more than a chunk). A sequence that stops (a stop token, a stop string,
``max_new_tokens``, a full row) or is cancelled leaves at once and frees its row.

Every request keeps its own ``GenerationConfig``: greedy or sampled with its own temperature, top-k,
top-p, repetition penalty and seeded ``torch.Generator``, its own stop tokens. A greedy request gets
the tokens ``generate`` gives it alone, and a seeded sampled one the same draws.

```python
scheduler = Scheduler(model, slots=8, max_queue=64, decode=tokenizer.decode)
handle = scheduler.submit(prompt_ids, GenerationConfig(max_new_tokens=64, eos_id=2))
async for token in handle:   # or a plain ``for`` in a thread; ``handle.cancel()`` to stop
    ...
completion = handle.result()   # tokens, finish_reason, stop_token
```

Shape legend: ``A`` decoding rows, ``T`` prefill chunk, ``V`` vocabulary.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from multihead.errors import ConfigError, LimitError, MultiheadError, QueueFullError
from multihead.generation.api import _check, _generator
from multihead.generation.config import GenerationConfig
from multihead.generation.hypothesis import Stopping
from multihead.generation.requests import Completion, FinishReason, RequestHandle
from multihead.generation.sampling import choose_tokens, penalise_repetitions
from multihead.generation.slots import SlotCache
from multihead.models.decoder import DecoderLM

__all__ = ["Scheduler", "SchedulerClosedError", "SchedulerStats"]


class SchedulerClosedError(MultiheadError):
    """The scheduler was closed before the request ended."""


@dataclass(frozen=True)
class SchedulerStats:
    """A snapshot: ``running`` rows (decoding or prefilling), ``queued`` requests, ``slots``, forward ``steps``
    (decoding steps) and ``generated`` tokens since the start."""

    running: int
    queued: int
    slots: int
    steps: int
    generated: int


@dataclass(eq=False)
class _Sequence:
    """A request in the scheduler: what it asked for and how far it got."""

    handle: RequestHandle
    prompt: list[int]
    config: GenerationConfig
    stopping: Stopping
    generator: torch.Generator | None
    prefilled: int = 0
    tokens: list[int] = field(default_factory=list)
    history: list[int] = field(default_factory=list)  # prompt + tokens, for the repetition penalty

    @property
    def last(self) -> int:
        return self.tokens[-1]


class Scheduler:
    """Continuous batching for one ``DecoderLM``; the model runs only in the scheduler's thread.

    Args:
        model: the language model (put in eval mode; nothing else may run it while the scheduler is open).
        slots: sequences decoded at once (rows of the preallocated cache).
        max_length: context of each row, prompt and output (default ``model.config.max_length``).
        max_queue: most requests waiting for a row; ``submit`` raises ``QueueFullError`` beyond it.
        prefill_chunk: most prompt tokens run in one forward (a prefill chunk per step).
        decode: token ids -> text; needed for requests with ``stop_strings``.
    """

    def __init__(
        self,
        model: DecoderLM,
        *,
        slots: int = 8,
        max_length: int | None = None,
        max_queue: int = 64,
        prefill_chunk: int = 512,
        decode: Callable[[list[int]], str] | None = None,
    ) -> None:
        if not isinstance(model, DecoderLM):
            raise ConfigError(f"Scheduler serves a DecoderLM, got {type(model).__name__}")
        context = model.config.max_length if max_length is None else max_length
        for name, value, least in (("slots", slots, 1), ("max_length", context, 2), ("max_queue", max_queue, 0),
                                   ("prefill_chunk", prefill_chunk, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError(f"Scheduler {name} must be an integer >= {least}, got {value!r}")
        if model.config.positions == "learned" and context > model.config.max_length:
            raise ConfigError(f"Scheduler max_length {context} exceeds the model's {model.config.max_length} "
                              "learned positions")
        self.model = model.eval()
        self.max_queue = max_queue
        self.prefill_chunk = prefill_chunk
        self.decode = decode
        with torch.inference_mode():
            self._cache = SlotCache(model, slots=slots, max_length=context)
        self._condition = threading.Condition()
        self._queue: deque[_Sequence] = deque()
        self._running: list[_Sequence] = []  # row i holds _running[i]; decoding rows first
        self._prefilling: _Sequence | None = None  # at row len(_running)
        self._closed = False
        self._steps = 0
        self._generated = 0
        self._thread = threading.Thread(target=self._loop, name="multihead-scheduler", daemon=True)
        self._thread.start()

    @property
    def slots(self) -> int:
        return self._cache.slots

    @property
    def max_length(self) -> int:
        """Context of each row: prompt tokens + generated tokens - 1 must fit it."""
        return self._cache.max_length

    @property
    def cache_bytes(self) -> int:
        """Memory of the preallocated key/value rows (``slots x max_length`` positions of every layer)."""
        return self._cache.nbytes

    def room(self, prompt_length: int) -> int:
        """The most ``max_new_tokens`` a prompt of ``prompt_length`` tokens can ask for (0: it does not fit)."""
        return max(self.max_length - prompt_length + 1, 0) if prompt_length < self.max_length else 0

    def stats(self) -> SchedulerStats:
        with self._condition:
            running = len(self._running) + (self._prefilling is not None)
            return SchedulerStats(running=running, queued=len(self._queue), slots=self.slots, steps=self._steps,
                                  generated=self._generated)

    def submit(self, prompt: Sequence[int], config: GenerationConfig) -> RequestHandle:
        """Queue a request; returns at once (safe from any thread and from an event loop).

        Raises:
            QueueFullError: ``max_queue`` requests are already waiting.
            LimitError: the prompt and ``config.max_new_tokens`` do not fit a row.
            ConfigError: options the scheduler cannot honour (beams, several sequences), bad token ids.
            SchedulerClosedError: after ``close``.
        """
        if self._closed:
            raise SchedulerClosedError("the scheduler is closed; no more requests")
        if not isinstance(config, GenerationConfig):
            raise ConfigError(f"config must be a GenerationConfig, got {type(config).__name__}")
        if config.num_beams != 1 or config.num_return_sequences != 1:
            raise ConfigError(f"the scheduler decodes one sequence per request (greedy or sampled), got num_beams "
                              f"{config.num_beams} and num_return_sequences {config.num_return_sequences}")
        if config.no_repeat_ngram_size or config.min_new_tokens:
            raise ConfigError(f"the scheduler has no n-gram blocking or minimum length (generate has), got "
                              f"no_repeat_ngram_size {config.no_repeat_ngram_size} and min_new_tokens "
                              f"{config.min_new_tokens}")
        try:
            ids = _check(self.model, [prompt], config, self.decode)[0]
        except MultiheadError:
            raise
        except ValueError as error:
            raise ConfigError(str(error)) from error
        if config.max_new_tokens > self.room(len(ids)):
            raise LimitError(f"a prompt of {len(ids)} tokens leaves room for {self.room(len(ids))} new tokens in "
                             f"the context of {self.max_length}; max_new_tokens is {config.max_new_tokens}")
        with torch.inference_mode():
            generator = _generator(self.model, config)
        sequence = _Sequence(RequestHandle(len(ids), self._cancel), ids, config,
                             Stopping(config.stop_ids, config.stop_strings, self.decode), generator, history=list(ids))
        with self._condition:
            if self._closed:
                raise SchedulerClosedError("the scheduler is closed; no more requests")
            if len(self._queue) >= self.max_queue:
                raise QueueFullError(f"the generation queue is full ({self.max_queue} requests waiting); retry later")
            self._queue.append(sequence)
            self._condition.notify_all()
        return sequence.handle

    def close(self, timeout: float | None = None) -> None:
        """Stop the thread; every request not yet ended fails with ``SchedulerClosedError``."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout)

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cancel(self, handle: RequestHandle) -> None:
        """A queued request ends now; a running one at the next step boundary (``cancel_requested``)."""
        with self._condition:
            queued = next((s for s in self._queue if s.handle is handle), None)
            if queued is not None:
                self._queue.remove(queued)
            self._condition.notify_all()
        if queued is not None:
            self._finish(queued, "cancelled")

    # Everything below runs in the scheduler's thread.
    def _loop(self) -> None:
        with torch.inference_mode():
            while True:
                with self._condition:
                    self._condition.wait_for(lambda: self._closed or bool(self._queue or self._running
                                                                           or self._prefilling))
                    if self._closed:
                        break
                try:
                    self._step()
                except Exception as error:  # a failed forward: its requests fail, the scheduler goes on
                    self._fail_all(error)
        self._fail_all(SchedulerClosedError("the scheduler was closed before the request ended"), queued=True)

    def _step(self) -> None:
        for row in reversed(range(len(self._running))):
            if self._running[row].handle.cancel_requested:
                self._leave(row, "cancelled")
        prefilling = self._prefilling
        if prefilling is not None and prefilling.handle.cancel_requested:
            self._cache.clear_row(len(self._running))
            self._prefilling = None
            self._finish(prefilling, "cancelled")
        self._prefill()
        if self._running:
            self._decode_step()

    def _prefill(self) -> None:
        """Run one chunk of the prompt at row ``len(_running)``, taking a new request from the queue if none."""
        budget = self.prefill_chunk
        while budget > 0 and len(self._running) < self.slots:
            if self._prefilling is None:
                with self._condition:
                    if not self._queue:
                        return
                    self._prefilling = self._queue.popleft()
            sequence, row = self._prefilling, len(self._running)
            assert sequence is not None
            count = min(budget, len(sequence.prompt) - sequence.prefilled)
            chunk = sequence.prompt[sequence.prefilled : sequence.prefilled + count]
            positions = self._cache.plan_prefill(row, count)
            ids = torch.tensor([chunk], device=self._cache.device)  # (1, T); the logits below are (1, V)
            logits = self.model(ids, cache=self._cache.decoder_cache, position_ids=positions, last_only=True)[:, -1]
            sequence.prefilled += count
            budget -= count
            if sequence.prefilled < len(sequence.prompt):
                return
            self._prefilling = None
            self._running.append(sequence)
            end = self._take(len(self._running) - 1, logits)
            if end is not None:
                self._leave(len(self._running) - 1, *end)

    def _decode_step(self) -> None:
        """One forward over every decoding row, then one new token for each."""
        rows = len(self._running)
        positions, mask = self._cache.plan_decode(rows)
        ids = torch.tensor([[s.last] for s in self._running], device=self._cache.device)  # (A, 1)
        logits = self.model(ids, mask=mask, cache=self._cache.decoder_cache, position_ids=positions)[:, -1]  # (A, V)
        self._steps += 1
        plain = [row for row, s in enumerate(self._running)  # greedy, unpenalised: one argmax for them all
                 if not s.config.do_sample and s.config.repetition_penalty == 1.0]
        chosen = dict(zip(plain, logits[plain].argmax(dim=-1).tolist(), strict=True)) if plain else {}
        ended = [(row, end) for row in range(rows)
                 if (end := self._take(row, logits[row : row + 1], chosen.get(row))) is not None]
        for row, (reason, stop_token) in reversed(ended):  # from the last row: lower rows keep their places
            self._leave(row, reason, stop_token=stop_token)

    def _take(self, row: int, logits: Tensor, token: int | None = None) -> tuple[FinishReason, int | None] | None:
        """Choose the next token of the sequence at ``row`` from its ``(1, V)`` logits (unless ``token`` was
        chosen already); returns why the sequence ends (and its stop token), or ``None`` while it goes on."""
        sequence = self._running[row]
        config = sequence.config
        if token is None:
            scores = logits.float()
            if config.repetition_penalty != 1.0:
                history = torch.tensor([sequence.history], device=scores.device)  # (1, L)
                scores = penalise_repetitions(scores, history, None, config.repetition_penalty)
            token = int(choose_tokens(scores, config, sequence.generator)[0])
        with self._condition:
            self._generated += 1
        reason: FinishReason | None = None
        stop_token = token if sequence.stopping.is_stop_token(token) else None
        if stop_token is not None:
            reason = "stop"
        else:
            sequence.tokens.append(token)
            sequence.history.append(token)
            sequence.handle._push([token])
            if sequence.stopping.hits_string(sequence.tokens):
                reason = "stop"
            elif len(sequence.tokens) >= config.max_new_tokens or self._cache.lengths[row] >= self.max_length:
                reason = "length"
        return None if reason is None else (reason, stop_token)

    def _leave(self, row: int, reason: FinishReason, stop_token: int | None = None) -> None:
        """End the sequence at ``row``; the last decoding row moves into its place (rows stay contiguous)."""
        sequence = self._running[row]
        last = len(self._running) - 1
        if row == last:
            self._cache.clear_row(row)
        else:
            self._cache.move_row(last, row)
            self._running[row] = self._running[last]
        self._running.pop()
        if self._prefilling is not None:
            self._cache.move_row(last + 1, last)
        self._finish(sequence, reason, stop_token=stop_token)

    def _finish(self, sequence: _Sequence, reason: FinishReason, *, stop_token: int | None = None) -> None:
        sequence.handle._push([], completion=Completion(tokens=list(sequence.tokens), finish_reason=reason,
                                                        stop_token=stop_token,
                                                        prompt_tokens=len(sequence.prompt)))

    def _fail_all(self, error: BaseException, *, queued: bool = False) -> None:
        """Fail every running (and, on close, queued) request; the rows are emptied."""
        failed = self._running + ([self._prefilling] if self._prefilling is not None else [])
        self._running, self._prefilling = [], None
        for row in range(self.slots):
            self._cache.clear_row(row)
        if queued:
            with self._condition:
                failed += list(self._queue)
                self._queue.clear()
        for sequence in failed:
            sequence.handle._push([], error=error)
