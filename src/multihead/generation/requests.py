"""``RequestHandle``: one request of a ``Scheduler``, read from any thread or from asyncio; ``Completion``: its end.

The scheduler's thread pushes token ids into the handle; a consumer iterates them with ``for``
(blocking) or ``async for`` (never blocking the event loop), or waits for ``result()``. Tokens are
delivered in order, once, to whichever iteration reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = ["Completion", "FinishReason", "RequestHandle"]

FinishReason = Literal["stop", "length", "cancelled"]
_ids = itertools.count(1)


@dataclass(frozen=True)
class Completion:
    """How a request ended.

    Attributes:
        tokens: every generated token, without the stop token that ended the request.
        finish_reason: ``stop`` (a stop token or stop string), ``length`` (``max_new_tokens`` or the
            slot's context reached) or ``cancelled``.
        stop_token: the stop token that ended it, else ``None``.
        prompt_tokens: length of the prompt that was run.
    """

    tokens: list[int]
    finish_reason: FinishReason
    stop_token: int | None
    prompt_tokens: int


class RequestHandle:
    """A submitted request: its new token ids as they come, ``cancel()``, and its ``Completion``.

    Iterating (``for`` or ``async for``) yields each generated token id once and ends when the request
    ends; a request that failed raises its error there (and from ``result``). An ``async for`` whose task
    is cancelled (a client that went away) cancels the request.
    """

    def __init__(self, prompt_tokens: int, on_cancel: Callable[[RequestHandle], None]) -> None:
        self.id = next(_ids)
        self.prompt_tokens = prompt_tokens
        self._on_cancel = on_cancel
        self._condition = threading.Condition()
        self._tokens: list[int] = []
        self._read = 0
        self._completion: Completion | None = None
        self._error: BaseException | None = None
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.cancel_requested = False

    def cancel(self) -> None:
        """Stop the request: a queued one leaves the queue, a running one leaves its slot at the next step.
        Tokens already produced stay readable; the completion says ``cancelled``. Safe to call twice or late."""
        with self._condition:
            if self._completion is not None or self._error is not None or self.cancel_requested:
                return
            self.cancel_requested = True
        self._on_cancel(self)

    @property
    def done(self) -> bool:
        with self._condition:
            return self._completion is not None or self._error is not None

    def result(self, timeout: float | None = None) -> Completion:
        """Block until the request ends; returns its ``Completion`` (raises its error, or ``TimeoutError``)."""
        with self._condition:
            if not self._condition.wait_for(lambda: self._completion is not None or self._error is not None,
                                            timeout):
                raise TimeoutError(f"request {self.id} did not end within {timeout} s")
            if self._error is not None:
                raise self._error
            assert self._completion is not None
            return self._completion

    async def wait(self) -> Completion:
        """The ``Completion``, awaited without blocking the event loop."""
        async for _ in self:
            pass
        return self.result(timeout=0)

    def __iter__(self) -> Iterator[int]:
        while True:
            with self._condition:
                self._condition.wait_for(self._readable)
                token = self._take()
            if token is None:
                return
            yield token

    async def __aiter__(self) -> AsyncIterator[int]:
        while True:
            with self._condition:
                ready = self._readable()
                token = self._take() if ready else None
                if not ready:
                    loop = asyncio.get_running_loop()
                    future: asyncio.Future[None] = loop.create_future()
                    self._waiters.append((loop, future))
            if ready:
                if token is None:
                    return
                yield token
                continue
            try:
                await future
            except asyncio.CancelledError:
                self.cancel()
                raise

    def _readable(self) -> bool:
        return self._read < len(self._tokens) or self._completion is not None or self._error is not None

    def _take(self) -> int | None:
        """The next unread token; ``None`` at the end; the request's error once every token was read."""
        if self._read < len(self._tokens):
            self._read += 1
            return self._tokens[self._read - 1]
        if self._error is not None:
            raise self._error
        return None

    # Called by the scheduler's thread.
    def _push(self, tokens: list[int], *, completion: Completion | None = None,
              error: BaseException | None = None) -> None:
        with self._condition:
            self._tokens.extend(tokens)
            if completion is not None:
                self._completion = completion
            if error is not None:
                self._error = error
            self._condition.notify_all()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_wake, future)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
