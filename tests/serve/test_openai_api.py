"""The OpenAI-compatible routes, spoken to by the real ``openai`` package (and once by hand, raw SSE), against the
answers of the project's own ``generate`` and ``SentenceEncoder`` for the same models."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import torch
from tiny_serve import TEXTS, RunningServer, chat_model, embedder

from multihead.generation import GenerationConfig, generate


def client(server: RunningServer, **options: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, **options)  # type: ignore[arg-type]


def alone(prompt: list[int], tokens: int) -> list[int]:
    """Greedy tokens of ``prompt`` decoded alone by ``generate`` (the reference for the server's answers)."""
    model = chat_model()
    config = GenerationConfig(max_new_tokens=tokens, eos_id=model.tokenizer.eos_id, stop_token_ids=model.stop_ids)
    return generate(model.model, [prompt], config)[0][0].tokens


def chat_prompt(text: str) -> list[int]:
    model = chat_model()
    return model.encode(model.render([{"role": "user", "content": text}]))


def test_models_are_listed_by_name_with_their_kind(server: RunningServer) -> None:
    models = {model.id: model for model in client(server).models.list()}
    assert set(models) == {"chat", "sentiment", "encoder", "en-de"}
    assert models["chat"].kind == "generation" and models["en-de"].kind == "translation"  # type: ignore[attr-defined]
    assert client(server).models.retrieve("encoder").id == "encoder"


def test_chat_completion_equals_greedy_generate(server: RunningServer) -> None:
    answer = client(server).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": TEXTS[0]}], max_tokens=12, temperature=0)
    expected = alone(chat_prompt(TEXTS[0]), 12)
    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == chat_model().decode(expected)
    assert answer.usage is not None and answer.usage.prompt_tokens == len(chat_prompt(TEXTS[0]))
    assert answer.usage.completion_tokens == len(expected)
    assert choice.finish_reason == ("length" if len(expected) == 12 else "stop")
    assert answer.id.startswith("chatcmpl-") and answer.model == "chat"


def test_streamed_chat_arrives_in_pieces_that_join_to_the_answer(server: RunningServer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": TEXTS[3]}]
    whole = client(server).chat.completions.create(model="chat", messages=messages, max_tokens=16, temperature=0)
    stream = client(server).chat.completions.create(model="chat", messages=messages, max_tokens=16, temperature=0,
                                                    stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage  # include_usage: a last chunk with usage


def test_raw_sse_by_hand(server: RunningServer) -> None:
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "temperature": 0,
            "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    chunks = [json.loads(block.removeprefix("data: ")) for block in events[:-2]]
    assert all(block.startswith("data: ") and "\n" not in block for block in events[:-2])
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
    assert text == chat_model().decode(alone(chat_prompt("Hi"), 6))
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_completions_with_several_prompts_and_stop_strings(server: RunningServer) -> None:
    model = chat_model()
    prompts = ["Once upon a time", "The capital of"]
    answer = client(server).completions.create(model="chat", prompt=prompts, max_tokens=10, temperature=0)
    assert [c.index for c in answer.choices] == [0, 1]
    for prompt, choice in zip(prompts, answer.choices, strict=True):
        assert choice.text == model.decode(alone(model.encode(prompt), 10))
    text = answer.choices[0].text
    assert len(text) >= 4
    stop = text[len(text) // 2 : len(text) // 2 + 2]  # the output is cut before a stop string, and says so
    cut = client(server).completions.create(model="chat", prompt=prompts[0], max_tokens=10, temperature=0,
                                            stop=["never appears", stop])
    assert cut.choices[0].text == text[: text.find(stop)] and cut.choices[0].finish_reason == "stop"


def test_seeded_sampling_repeats_and_n_choices_differ(server: RunningServer) -> None:
    ask = {"model": "chat", "messages": [{"role": "user", "content": "Tell me a story"}], "max_tokens": 12,
           "temperature": 1.0, "seed": 7, "n": 3}
    first = client(server).chat.completions.create(**ask)  # type: ignore[call-overload]
    second = client(server).chat.completions.create(**ask)  # type: ignore[call-overload]
    texts = [c.message.content for c in first.choices]
    assert texts == [c.message.content for c in second.choices]
    assert len(set(texts)) > 1  # choice i samples with seed + i


def test_embeddings_equal_the_sentence_encoder_in_float_and_base64(server: RunningServer) -> None:
    texts = TEXTS[:3]
    expected = embedder().encoder.encode(texts)
    floats = client(server).embeddings.create(model="encoder", input=texts, encoding_format="float")
    got = torch.tensor([item.embedding for item in floats.data])
    assert torch.allclose(got, expected, atol=1e-5) and [item.index for item in floats.data] == [0, 1, 2]
    default = client(server).embeddings.create(model="encoder", input=texts[0])  # the client asks for base64
    assert torch.allclose(torch.tensor(default.data[0].embedding), expected[0], atol=1e-6)
    assert floats.usage.prompt_tokens == sum(len(embedder().encoder.tokenizer.encode(t, max_length=64)) for t in texts)


def test_errors_come_in_openai_shape(server: RunningServer) -> None:
    api = client(server)
    with pytest.raises(openai.NotFoundError) as missing:
        api.chat.completions.create(model="/etc/passwd", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
    assert "not served here" in missing.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as wrong:
        api.embeddings.create(model="chat", input="x")
    assert wrong.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.UnprocessableEntityError) as bad:
        api.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}], temperature=5)
    assert bad.value.body["param"] == "temperature" and "temperature" in bad.value.body["message"]  # type: ignore[index]
    with pytest.raises(openai.UnprocessableEntityError) as unsupported:
        api.chat.completions.create(model="chat", messages=[{"role": "user", "content": "x"}], logprobs=True)
    assert unsupported.value.body["param"] == "logprobs"  # type: ignore[index]
    response = httpx.post(server.url + "/v1/chat/completions", content=b'{"model": "chat", "messages": [',
                          headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "json_invalid"
    response = httpx.post(server.url + "/v1/chat/completions", json={"model": "chat"})
    assert response.status_code == 422 and response.json()["error"]["param"] == "messages"
    assert httpx.get(server.url + "/v1/nowhere").json()["error"]["type"] == "invalid_request_error"
