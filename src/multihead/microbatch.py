"""``MicroBatcher``: gather single requests (texts to classify or embed) into small batches for one model call.

A worker thread waits for a first item, then for more until ``max_batch`` items are in or ``max_wait``
seconds have passed since the first one arrived, and calls ``run(batch)`` once. Each caller gets its
own result through a ``concurrent.futures.Future`` (or by awaiting the batcher from asyncio); an error
of ``run`` goes to every caller of that batch. The queue is bounded: ``submit`` raises
``QueueFullError`` beyond ``max_queue`` waiting items.

```python
batcher = MicroBatcher(lambda texts: classifier.predict(texts), max_batch=32, max_wait=0.005)
label = await batcher(text)            # from an event loop
label = batcher.submit(text).result()  # from a thread
```
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

from multihead.errors import ConfigError, MultiheadError, QueueFullError

__all__ = ["MicroBatcher", "MicroBatcherClosedError"]

Item = TypeVar("Item")
Result = TypeVar("Result")


class MicroBatcherClosedError(MultiheadError):
    """The micro-batcher was closed before the item was run."""


class MicroBatcher(Generic[Item, Result]):
    """Batch single items for ``run`` in a background thread.

    Args:
        run: a batch of items -> one result per item, in order (runs in the batcher's thread only).
        max_batch: most items in one call.
        max_wait: seconds the first item of a batch waits for company (0: run what is there at once).
        max_queue: most items waiting; ``submit`` raises ``QueueFullError`` beyond.
        name: the worker thread's name.
    """

    def __init__(self, run: Callable[[list[Item]], Sequence[Result]], *, max_batch: int = 32,
                 max_wait: float = 0.005, max_queue: int = 1024, name: str = "multihead-microbatch") -> None:
        for label, value in (("max_batch", max_batch), ("max_queue", max_queue)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"MicroBatcher {label} must be an integer >= 1, got {value!r}")
        if isinstance(max_wait, bool) or not isinstance(max_wait, int | float) or not 0 <= max_wait <= 10:
            raise ConfigError(f"MicroBatcher max_wait must be seconds in [0, 10], got {max_wait!r}")
        self.run, self.max_batch, self.max_wait, self.max_queue = run, max_batch, float(max_wait), max_queue
        self.batches = 0  # calls of ``run`` so far
        self._condition = threading.Condition()
        self._queue: deque[tuple[Item, Future[Result], float]] = deque()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> Future[Result]:
        """Queue one item; its future gets the result (or ``run``'s error). Cancelling the future before its
        batch starts drops the item."""
        future: Future[Result] = Future()
        with self._condition:
            if self._closed:
                raise MicroBatcherClosedError("the micro-batcher is closed; no more items")
            if len(self._queue) >= self.max_queue:
                raise QueueFullError(f"the batch queue is full ({self.max_queue} items waiting); retry later")
            self._queue.append((item, future, time.monotonic()))
            self._condition.notify_all()
        return future

    async def __call__(self, item: Item) -> Result:
        """The result of one item, awaited without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(item))

    @property
    def queued(self) -> int:
        with self._condition:
            return len(self._queue)

    def close(self, timeout: float | None = None) -> None:
        """Run what is queued, then stop the thread."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout)

    def __enter__(self) -> MicroBatcher[Item, Result]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._closed or bool(self._queue))
                if not self._queue:
                    return  # closed and drained
                deadline = self._queue[0][2] + self.max_wait
                while len(self._queue) < self.max_batch and not self._closed:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._condition.wait(left)
                taken = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            batch = [(item, future) for item, future, _ in taken if future.set_running_or_notify_cancel()]
            if batch:
                self._run([item for item, _ in batch], [future for _, future in batch])

    def _run(self, items: list[Item], futures: list[Future[Result]]) -> None:
        try:
            results = list(self.run(items))
            if len(results) != len(items):
                raise ValueError(f"MicroBatcher run returned {len(results)} results for {len(items)} items")
        except Exception as error:  # every caller of the batch hears of it
            for future in futures:
                future.set_exception(error)
            return
        finally:
            self.batches += 1
        for future, result in zip(futures, results, strict=True):
            future.set_result(result)
