"""Where models run, off the event loop: a continuous-batching scheduler per generation model (behind the small
``TokenGenerator`` interface) and a ``ModelWorker`` per model for everything else: ``MicroBatcher`` threads for
classification and embeddings, and one thread that runs translations, summaries and attention maps in turn.

Every queue is bounded: one request too many raises ``QueueFullError`` (the server answers 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from multihead.errors import QueueFullError
from multihead.generation.config import GenerationConfig
from multihead.generation.requests import RequestHandle
from multihead.microbatch import MicroBatcher

__all__ = ["ModelWorker", "TokenGenerator"]

T = TypeVar("T")
R = TypeVar("R")


class TokenGenerator(Protocol):
    """What the server needs of a generation scheduler (``multihead.generation.scheduler.Scheduler`` is one)."""

    @property
    def slots(self) -> int: ...

    @property
    def max_length(self) -> int: ...

    def room(self, prompt_length: int) -> int: ...

    def submit(self, prompt: Sequence[int], config: GenerationConfig) -> RequestHandle: ...

    def stats(self) -> Any: ...

    def close(self, timeout: float | None = None) -> None: ...


class ModelWorker:
    """One thread that runs a model's calls in order, with a bounded queue and micro-batching.

    Args:
        name: the model's name (names the thread).
        max_queue: requests waiting or running at once; one more raises ``QueueFullError``.
        batch_size: most items one micro-batch runs.
        batch_wait: seconds a micro-batch waits for more requests once it has one.
        on_batch: called with each micro-batch's size (metrics).
    """

    def __init__(self, name: str, *, max_queue: int, batch_size: int, batch_wait: float,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.name = name
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.on_batch = on_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"multihead-{name}")
        self._pending = 0
        self._batchers: dict[str, MicroBatcher[Any, Any]] = {}

    @property
    def pending(self) -> int:
        """Calls admitted and not finished (waiting or running), and texts waiting for a micro-batch."""
        return self._pending + sum(batcher.queued for batcher in self._batchers.values())

    def check_room(self) -> None:
        """Raise ``QueueFullError`` when one more request would not fit the queue."""
        if self._pending >= self.max_queue + 1:  # one running plus max_queue waiting
            raise QueueFullError(f"model {self.name!r} has {self._pending} requests waiting or running (the queue "
                                 f"holds {self.max_queue}); retry later")

    def _admit(self) -> None:
        self.check_room()
        self._pending += 1

    def _release(self, *_: object) -> None:
        self._pending -= 1

    async def call(self, function: Callable[..., R], *args: Any) -> R:
        """Run ``function(*args)`` in the worker's thread; the queue slot is held until it has run."""
        self._admit()
        future = asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        future.add_done_callback(self._release)
        return await future

    async def batched(self, key: str, function: Callable[[list[T]], list[R]], items: Sequence[T]) -> list[R]:
        """``function`` over ``items``, each item batched with other requests' items of the same ``key`` by a
        ``MicroBatcher`` (one forward of up to ``batch_size`` items); results in order."""
        batcher = self._batchers.get(key)
        if batcher is None:
            def run(batch: list[T]) -> list[R]:
                if self.on_batch is not None:
                    self.on_batch(len(batch))
                return function(batch)

            batcher = self._batchers[key] = MicroBatcher(
                run, max_batch=self.batch_size, max_wait=self.batch_wait,
                max_queue=max((self.max_queue + 1) * self.batch_size, 1), name=f"multihead-{self.name}-{key}")
        futures = []
        try:
            for item in items:
                futures.append(batcher.submit(item))
            return list(await asyncio.gather(*(asyncio.wrap_future(future) for future in futures)))
        finally:
            for future in futures:
                future.cancel()  # no effect once done; drops items not yet run when the caller left

    async def stream(self, make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        """Iterate ``make()`` in the worker's thread, yielding each item here; leaving the loop early (or the
        task being cancelled) stops the iteration at its next item."""
        self._admit()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def put(kind: str, value: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        def run() -> None:
            try:
                if stop.is_set():
                    return
                iterator = make()
                for item in iterator:
                    put("item", item)
                    if stop.is_set():
                        break
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            except Exception as error:
                put("error", error)
            finally:
                put("end", None)

        future = loop.run_in_executor(self._executor, run)
        future.add_done_callback(self._release)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
        finally:
            stop.set()

    def close(self) -> None:
        """Stop taking work: queued calls are dropped, queued micro-batches still run."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        for batcher in self._batchers.values():
            batcher.close(timeout=10)
