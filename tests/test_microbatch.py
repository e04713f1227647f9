"""``MicroBatcher``: single items are run together in batches no larger than asked, each caller gets its own
result or its batch's error, the queue is bounded, and asyncio callers do not block the loop."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import CancelledError, ThreadPoolExecutor

import pytest

from multihead.errors import ConfigError, QueueFullError
from multihead.microbatch import MicroBatcher, MicroBatcherClosedError


def test_items_are_batched_up_to_the_cap_and_each_caller_gets_its_result() -> None:
    sizes: list[int] = []

    def square(batch: list[int]) -> list[int]:
        sizes.append(len(batch))
        return [x * x for x in batch]

    with MicroBatcher(square, max_batch=4, max_wait=0.2) as batcher, ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda x: batcher.submit(x).result(timeout=10), range(20)))
    assert results == [x * x for x in range(20)]
    assert sum(sizes) == 20 and max(sizes) <= 4
    assert len(sizes) < 20  # items really travelled together


def test_a_lone_item_waits_no_longer_than_the_window() -> None:
    with MicroBatcher(lambda batch: [x + 1 for x in batch], max_batch=64, max_wait=0.01) as batcher:
        assert batcher.submit(1).result(timeout=5) == 2
        assert batcher.batches == 1


def test_an_error_reaches_every_caller_of_its_batch_and_the_batcher_goes_on() -> None:
    release = threading.Event()

    def run(batch: list[int]) -> list[int]:
        release.wait(5)
        if 13 in batch:
            raise RuntimeError("unlucky batch")
        return batch

    with MicroBatcher(run, max_batch=8, max_wait=0.1) as batcher:
        futures = [batcher.submit(x) for x in (12, 13, 14)]
        release.set()
        for future in futures:
            with pytest.raises(RuntimeError, match="unlucky"):
                future.result(timeout=5)
        assert batcher.submit(1).result(timeout=5) == 1


def test_a_wrong_number_of_results_is_an_error() -> None:
    with MicroBatcher(lambda batch: batch[:1], max_batch=8, max_wait=0.2) as batcher:
        futures = [batcher.submit(x) for x in range(3)]
        with pytest.raises(ValueError, match="returned 1 results for 3 items"):
            futures[0].result(timeout=5)


def test_the_queue_is_bounded_and_a_cancelled_item_is_dropped() -> None:
    started, release = threading.Event(), threading.Event()
    seen: list[list[int]] = []

    def run(batch: list[int]) -> list[int]:
        seen.append(batch)
        started.set()
        release.wait(5)
        return batch

    with MicroBatcher(run, max_batch=1, max_wait=0, max_queue=2) as batcher:
        first = batcher.submit(0)
        started.wait(5)  # the worker is busy with item 0
        dropped, kept = batcher.submit(1), batcher.submit(2)
        with pytest.raises(QueueFullError, match="queue is full"):
            batcher.submit(3)
        assert dropped.cancel()
        release.set()
        assert first.result(timeout=5) == 0 and kept.result(timeout=5) == 2
        with pytest.raises(CancelledError):
            dropped.result(timeout=0)
    assert seen == [[0], [2]]
    with pytest.raises(MicroBatcherClosedError):
        batcher.submit(4)


def test_asyncio_callers_share_batches() -> None:
    sizes: list[int] = []

    def run(batch: list[str]) -> list[str]:
        sizes.append(len(batch))
        return [text.upper() for text in batch]

    async def main() -> list[str]:
        with MicroBatcher(run, max_batch=16, max_wait=0.05) as batcher:
            return list(await asyncio.gather(*(batcher(text) for text in ("a", "b", "c", "d"))))

    assert asyncio.run(main()) == ["A", "B", "C", "D"]
    assert sizes == [4]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="max_batch"):
        MicroBatcher(lambda batch: batch, max_batch=0)
    with pytest.raises(ConfigError, match="max_wait"):
        MicroBatcher(lambda batch: batch, max_wait=-1)
