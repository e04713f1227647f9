"""The continuous-batching scheduler: every request gets what ``generate`` gives it alone, whatever joins or
leaves around it; cancellation frees rows; the queue is bounded; asyncio consumers never block the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import VOCAB, tiny_lm

from multihead import DecoderLM
from multihead.errors import ConfigError, LimitError, QueueFullError
from multihead.generation import GenerationConfig, generate
from multihead.generation.scheduler import Scheduler, SchedulerClosedError

PROMPTS = [[3], [4, 5, 6, 7, 8, 9, 10, 11, 12], [13, 14], [15, 3, 4, 5, 6], [7] * 20, [8, 9], [10, 11, 12, 13]]


def alone(model: DecoderLM, prompt: list[int], config: GenerationConfig) -> tuple[list[int], int | None]:
    best = generate(model, [prompt], config)[0][0]
    return best.tokens, best.stop_token


def run_staggered(scheduler: Scheduler, requests: list[tuple[list[int], GenerationConfig]], *, every: int = 2
                  ) -> list[tuple[list[int], int | None]]:
    """Submit the requests one by one, each after the previous one produced ``every`` tokens (or ended), so
    that newcomers join sequences at different steps."""
    handles = []
    for prompt, config in requests:
        handle = scheduler.submit(prompt, config)
        handles.append(handle)
        for count, _ in enumerate(handle, start=1):
            if count == every:
                break
    results = []
    for handle in handles:
        completion = handle.result(timeout=60)
        results.append((completion.tokens, completion.stop_token))
    return results


@pytest.mark.parametrize("positions", ["rope", "learned", "sinusoidal", "alibi"])
def test_greedy_requests_get_the_tokens_they_get_alone(positions: str) -> None:
    model = tiny_lm(positions=positions)
    lengths = [12, 3, 9, 15, 1, 10, 7]
    configs = [GenerationConfig(max_new_tokens=n) for n in lengths]
    for index in (0, 2, 3):  # these stop at a token they would write halfway
        free = alone(model, PROMPTS[index], configs[index])[0]
        configs[index] = configs[index].replace(eos_id=free[len(free) // 2])
    requests = list(zip(PROMPTS, configs, strict=True))
    expected = [alone(model, prompt, config) for prompt, config in requests]
    with Scheduler(model, slots=3, prefill_chunk=4) as scheduler:  # fewer rows than requests; chunked prompts
        assert run_staggered(scheduler, requests) == expected
        stats = scheduler.stats()
    assert stats.running == 0 and stats.queued == 0 and stats.steps > 0
    assert stats.generated >= sum(len(tokens) for tokens, _ in expected)
    assert any(stop is not None for _, stop in expected) and any(stop is None for _, stop in expected)


def test_grouped_query_heads_and_all_at_once() -> None:
    model = tiny_lm(n_heads=4, n_kv_heads=2)
    config = GenerationConfig(max_new_tokens=10, eos_id=5)
    expected = [alone(model, prompt, config) for prompt in PROMPTS]
    with Scheduler(model, slots=8) as scheduler:
        assert scheduler.cache_bytes == 2 * 2 * 8 * 2 * 64 * 8 * 4  # K and V, layers, slots, Hkv, context, Dh, fp32
        handles = [scheduler.submit(prompt, config) for prompt in PROMPTS]
        assert [(h.result(timeout=60).tokens, h.result().stop_token) for h in handles] == expected


def test_seeded_sampling_and_repetition_penalty_match_generate_alone() -> None:
    model = tiny_lm()
    configs = [
        GenerationConfig(max_new_tokens=12, do_sample=True, seed=1, temperature=0.7),
        GenerationConfig(max_new_tokens=9, do_sample=True, seed=2, top_k=4, eos_id=5),
        GenerationConfig(max_new_tokens=11, do_sample=True, seed=3, top_p=0.8, repetition_penalty=1.5),
        GenerationConfig(max_new_tokens=8, repetition_penalty=2.0),  # greedy, penalised
        GenerationConfig(max_new_tokens=10, do_sample=True, seed=1, temperature=0.7),  # same seed, other prompt
    ]
    requests = list(zip(PROMPTS, configs, strict=False))
    expected = [alone(model, prompt, config) for prompt, config in requests]
    with Scheduler(model, slots=4, prefill_chunk=3) as scheduler:
        assert run_staggered(scheduler, requests, every=3) == expected
    assert len({tuple(tokens) for tokens, _ in expected}) == len(expected)


def test_cancelling_frees_the_row_and_a_queued_request_leaves_the_queue() -> None:
    model = tiny_lm()
    long = GenerationConfig(max_new_tokens=50)
    with Scheduler(model, slots=1, max_queue=4) as scheduler:
        first = scheduler.submit([3, 4], long)
        tokens = iter(first)
        next(tokens)
        waiting = scheduler.submit([5, 6], GenerationConfig(max_new_tokens=4))
        dropped = scheduler.submit([7], long)
        assert scheduler.stats().queued == 2
        dropped.cancel()
        assert dropped.result(timeout=1).finish_reason == "cancelled" and scheduler.stats().queued == 1
        first.cancel()
        completion = first.result(timeout=60)
        assert completion.finish_reason == "cancelled" and 1 <= len(completion.tokens) < 50
        assert waiting.result(timeout=60).tokens == alone(model, [5, 6], GenerationConfig(max_new_tokens=4))[0]
        assert scheduler.stats().running == 0
        first.cancel()  # late: nothing happens


def test_a_full_queue_refuses_requests() -> None:
    model = tiny_lm()
    with Scheduler(model, slots=1, max_queue=1) as scheduler:
        running = scheduler.submit([3], GenerationConfig(max_new_tokens=60))
        next(iter(running))  # it holds the only row
        queued = scheduler.submit([4], GenerationConfig(max_new_tokens=2))
        with pytest.raises(QueueFullError, match="queue is full"):
            scheduler.submit([5], GenerationConfig(max_new_tokens=2))
        running.cancel()
        assert queued.result(timeout=60).finish_reason == "length"
        scheduler.submit([5], GenerationConfig(max_new_tokens=2)).result(timeout=60)  # room again


def test_bad_requests_are_refused_with_one_clear_line() -> None:
    model = tiny_lm(max_length=16)
    with Scheduler(model, slots=2, decode=lambda ids: "".join(chr(97 + i) for i in ids)) as scheduler:
        assert scheduler.room(10) == 7 and scheduler.room(16) == 0
        with pytest.raises(LimitError, match="room for 7 new tokens"):
            scheduler.submit([3] * 10, GenerationConfig(max_new_tokens=8))
        scheduler.submit([3] * 10, GenerationConfig(max_new_tokens=7)).result(timeout=60)
        with pytest.raises(ConfigError, match="num_beams 3"):
            scheduler.submit([3], GenerationConfig(num_beams=3))
        with pytest.raises(ConfigError, match="outside the vocabulary"):
            scheduler.submit([VOCAB], GenerationConfig())
    with pytest.raises(ConfigError, match="need a decode callable"), Scheduler(model) as scheduler:
        scheduler.submit([3], GenerationConfig(stop_strings=("x",)))
    with pytest.raises(ConfigError, match="slots must be"):
        Scheduler(model, slots=0)


def test_stop_strings_end_a_request() -> None:
    model = tiny_lm()
    decode = lambda ids: " ".join(str(i) for i in ids)  # noqa: E731
    plain = GenerationConfig(max_new_tokens=12)
    tokens = alone(model, [3, 4], plain)[0]
    stop = f"{tokens[2]} {tokens[3]}"
    expected = generate(model, [[3, 4]], plain.replace(stop_strings=(stop,)), decode=decode)[0][0]
    with Scheduler(model, decode=decode) as scheduler:
        completion = scheduler.submit([3, 4], plain.replace(stop_strings=(stop,))).result(timeout=60)
    assert completion.finish_reason == "stop" and completion.stop_token is None
    assert completion.tokens == expected.tokens and len(completion.tokens) < 12


def test_asyncio_consumers_stream_concurrently() -> None:
    model = tiny_lm()
    config = GenerationConfig(max_new_tokens=8, eos_id=5)
    expected = [alone(model, prompt, config)[0] for prompt in PROMPTS]

    async def consume(scheduler: Scheduler, prompt: list[int]) -> list[int]:
        handle = scheduler.submit(prompt, config)
        tokens = [token async for token in handle]
        assert (await handle.wait()).tokens == tokens
        return tokens

    async def main() -> list[list[int]]:
        ticks = 0

        async def ticker() -> None:  # the loop keeps running while the model works
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        beat = asyncio.ensure_future(ticker())
        with Scheduler(model, slots=3) as scheduler:
            results = await asyncio.gather(*(consume(scheduler, prompt) for prompt in PROMPTS))
        beat.cancel()
        assert ticks > len(PROMPTS)
        return list(results)

    assert asyncio.run(main()) == expected


def test_a_cancelled_asyncio_task_cancels_its_request() -> None:
    model = tiny_lm(max_length=4096)

    async def main() -> tuple[str, str]:
        with Scheduler(model, slots=1) as scheduler:
            busy = scheduler.submit([3], GenerationConfig(max_new_tokens=4000))  # holds the only row for seconds
            await asyncio.to_thread(next, iter(busy))
            waiting = scheduler.submit([4], GenerationConfig(max_new_tokens=5))

            async def reader() -> list[int]:
                return [token async for token in waiting]

            task = asyncio.ensure_future(reader())
            await asyncio.sleep(0.05)  # the reader now waits on the handle
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            reason = (await asyncio.to_thread(waiting.result, 5)).finish_reason
            busy.cancel()
            return reason, (await busy.wait()).finish_reason

    assert asyncio.run(main()) == ("cancelled", "cancelled")


def test_close_fails_what_has_not_ended() -> None:
    model = tiny_lm()
    scheduler = Scheduler(model, slots=1)
    running = scheduler.submit([3], GenerationConfig(max_new_tokens=60))
    next(iter(running))
    queued = scheduler.submit([4], GenerationConfig(max_new_tokens=2))
    scheduler.close()
    for handle in (running, queued):
        with pytest.raises(SchedulerClosedError):
            handle.result(timeout=5)
    with pytest.raises(SchedulerClosedError):
        scheduler.submit([3], GenerationConfig())


def test_a_failing_forward_fails_its_requests_and_the_scheduler_goes_on() -> None:
    model = tiny_lm()
    calls = threading.Event()
    original = model.forward

    def flaky(*args: object, **kwargs: object) -> torch.Tensor:
        if not calls.is_set():
            calls.set()
            raise RuntimeError("out of memory (simulated)")
        return original(*args, **kwargs)

    model.forward = flaky  # type: ignore[method-assign]
    config = GenerationConfig(max_new_tokens=5)
    with Scheduler(model, slots=2) as scheduler:
        with pytest.raises(RuntimeError, match="simulated"):
            scheduler.submit([3], config).result(timeout=60)
        assert scheduler.submit([3], config).result(timeout=60).tokens == alone(model, [3], config)[0]


@settings(deadline=None, max_examples=8)
@given(prompts=st.lists(st.lists(st.integers(3, VOCAB - 1), min_size=1, max_size=12), min_size=1, max_size=6),
       lengths=st.lists(st.integers(1, 10), min_size=6, max_size=6), slots=st.integers(1, 4),
       chunk=st.integers(1, 8), every=st.integers(1, 3))
def test_any_mix_of_requests_slots_and_chunks_matches_generate(
    prompts: list[list[int]], lengths: list[int], slots: int, chunk: int, every: int
) -> None:
    model = tiny_lm()
    requests = [(prompt, GenerationConfig(max_new_tokens=n, eos_id=5)) for prompt, n in zip(prompts, lengths,
                                                                                            strict=False)]
    expected = [alone(model, prompt, config) for prompt, config in requests]
    with Scheduler(model, slots=slots, prefill_chunk=chunk) as scheduler:
        assert run_staggered(scheduler, requests, every=every) == expected
