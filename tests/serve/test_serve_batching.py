"""Continuous batching through the server: requests decoded together each get exactly the tokens they get alone
(greedy), whether batching is on or off; micro-batched classification equals the model run on each text alone."""

from __future__ import annotations

import asyncio
import threading

import openai
import torch
from tiny_serve import TEXTS, chat_model, classifier, serving, wait_until

from multihead.generation import GenerationConfig, generate


def _alone(prompt: str, tokens: int) -> str:
    model = chat_model()
    config = GenerationConfig(max_new_tokens=tokens, eos_id=model.tokenizer.eos_id, stop_token_ids=model.stop_ids)
    return model.decode(generate(model.model, [model.encode(prompt)], config)[0][0].tokens)


async def _ask_all(url: str, requests: list[tuple[str, int]]) -> list[str]:
    api = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    answers = await asyncio.gather(*(api.completions.create(model="chat", prompt=prompt, max_tokens=tokens,
                                                            temperature=0) for prompt, tokens in requests))
    await api.close()
    return [answer.choices[0].text for answer in answers]


def _serve_gated(requests: list[tuple[str, int]], *, batching: bool) -> tuple[list[str], object]:
    """Answers of ``requests`` sent at once to a server with 3 slots, released only once all are in."""
    model = chat_model()
    gate = threading.Event()
    model.model.register_forward_pre_hook(lambda module, args: gate.wait(30) and None)
    with serving({"chat": model}, slots=3, max_queue=16, batching=batching) as server:
        scheduler = server.state.schedulers["chat"]  # type: ignore[attr-defined]
        result: list[list[str]] = []
        thread = threading.Thread(target=lambda: result.append(asyncio.run(_ask_all(server.url, requests))))
        thread.start()
        assert wait_until(lambda: scheduler.stats().queued + scheduler.stats().running == len(requests))
        gate.set()  # everyone is in: from here on, rows join and leave the batch as they go
        thread.join(120)
        assert result, "the requests did not finish"
        return result[0], scheduler.stats()


def test_batched_requests_get_the_tokens_they_get_alone() -> None:
    requests = [(" ".join(TEXTS[: 1 + i % 5]), 4 + 7 * i) for i in range(8)]  # prompts of 8..60 tokens, 4..53 out
    expected = [_alone(prompt, tokens) for prompt, tokens in requests]
    batched, stats = _serve_gated(requests, batching=True)
    assert batched == expected
    assert stats.slots == 3 and stats.steps < stats.generated - len(requests)  # type: ignore[attr-defined]
    one_by_one, stats = _serve_gated(requests, batching=False)
    assert one_by_one == expected and stats.slots == 1  # type: ignore[attr-defined]


def test_micro_batched_classification_equals_each_text_alone() -> None:
    model = classifier()
    texts = TEXTS * 3
    with torch.inference_mode():
        expected = [model.run([text])[0] for text in texts]
    with serving({"sentiment": model}, micro_batch_size=8, micro_batch_wait=0.05) as server:
        async def ask() -> list[dict[str, float]]:
            import httpx

            async with httpx.AsyncClient(base_url=server.url) as client:
                responses = await asyncio.gather(*(client.post("/v1/classify", json={"model": "sentiment",
                                                                                   "input": text}) for text in texts))
            return [response.json()["data"][0]["probabilities"] for response in responses]

        got = asyncio.run(ask())
        metrics = server.state.metrics.render().decode()  # type: ignore[attr-defined]
    for row, reference in zip(got, expected, strict=True):
        assert row.keys() == reference.keys()
        assert all(abs(row[label] - reference[label]) < 1e-5 for label in row)
    count = next(line for line in metrics.splitlines()
                 if line.startswith('multihead_batch_size_count{model="sentiment"}'))
    assert float(count.split()[-1]) < len(texts)  # texts travelled together
