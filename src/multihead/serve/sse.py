"""Server-sent events and client disconnects.

``EventStream`` sends ``data: JSON`` events and listens for the client going away the whole time (not only
when it next writes): the body's generator is cancelled at once, so a request still queued or between two
tokens leaves its scheduler slot immediately. ``unless_disconnected`` does the same for a plain answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

__all__ = ["DONE", "ClientGoneError", "EventStream", "event", "unless_disconnected", "within"]

T = TypeVar("T")
DONE = b"data: [DONE]\n\n"


def event(data: Any) -> bytes:
    """One server-sent event carrying ``data`` as compact JSON."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


class ClientGoneError(Exception):
    """The client closed the connection before the answer was ready."""


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response whose body stops as soon as the client disconnects.

    Args:
        content: async iterator of encoded events.
        on_disconnect: called once if the client went away before the end.
    """

    media_type = "text/event-stream"

    def __init__(self, content: Any, *, on_disconnect: Callable[[], None] | None = None) -> None:
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_disconnect = on_disconnect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        finished = False

        async with anyio.create_task_group() as group:

            async def stream() -> None:
                nonlocal finished
                try:
                    await self.stream_response(send)
                except OSError:  # the connection broke while writing
                    pass
                else:
                    finished = True
                group.cancel_scope.cancel()

            group.start_soon(stream)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()
        if not finished and self.on_disconnect is not None:
            self.on_disconnect()


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; if the client disconnects first, cancel it and raise ``ClientGoneError``."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    raise ClientGoneError("the client closed the connection")


async def within(items: AsyncIterator[T], seconds: float) -> AsyncIterator[T]:
    """The items of ``items`` until ``seconds`` have passed, then ``asyncio.TimeoutError`` (``items`` is closed)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    iterator = aiter(items)
    try:
        while True:
            try:
                item = await asyncio.wait_for(anext(iterator), max(deadline - loop.time(), 0.0))
            except StopAsyncIteration:
                return
            yield item
    finally:
        close = getattr(iterator, "aclose", None)
        if close is not None:
            await close()
