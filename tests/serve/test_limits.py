"""Keys, hosts, origins and limits: 401/403 with and without a key, 413 for big bodies, 422 for bad fields, 400
for prompts over the limit, 503 with ``Retry-After`` when the queue is full, and a client that disconnects
freeing its decoding slot at once."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest
from tiny_serve import chat_model, classifier, serving, wait_until

from multihead.errors import ConfigError
from multihead.generation import GenerationConfig, generate
from multihead.serve import ServeSettings

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0}


def test_api_key_is_required_everywhere_but_health_and_the_page() -> None:
    with serving({"chat": chat_model()}, api_key="sekret-key") as server:
        for key in (None, "wrong"):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/metrics")):
                response = httpx.request(method, server.url + path, json=CHAT, headers=headers)
                assert response.status_code == 401, (key, path)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["error"]["type"] == "authentication_error"
        assert httpx.get(server.url + "/health").status_code == 200
        assert httpx.get(server.url + "/").status_code == 200  # the page holds no data; it asks for the key
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
        api = openai.OpenAI(base_url=server.url + "/v1", api_key="sekret-key", max_retries=0)
        assert api.chat.completions.create(**CHAT).choices[0].message.content is not None  # type: ignore[call-overload]
        metrics = httpx.get(server.url + "/metrics", headers={"Authorization": "Bearer sekret-key"})
        assert 'multihead_rejected_total{reason="invalid_api_key"}' in metrics.text


def test_foreign_hosts_and_origins_get_403_with_or_without_a_key() -> None:
    for key in (None, "sekret-key"):
        auth = {"Authorization": f"Bearer {key}"} if key else {}
        with serving({"chat": chat_model()}, api_key=key) as server:
            rebound = httpx.get(server.url + "/v1/models", headers={"Host": "evil.example", **auth})
            assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "forbidden_host"
            for origin in ("http://evil.example", "null"):  # "null": a sandboxed frame on any site
                other = httpx.post(server.url + "/v1/chat/completions", json=CHAT, headers={"Origin": origin, **auth})
                assert other.status_code == 403 and other.json()["error"]["type"] == "permission_error"
            own = server.url.removeprefix("http://")
            assert httpx.get(server.url + "/v1/models", headers={"Origin": f"http://{own}", **auth}).status_code == 200
    with serving({"chat": chat_model()}, allowed_origins=("http://app.example",),
                 allowed_hosts=("box.example",)) as server:
        allowed = httpx.get(server.url + "/v1/models", headers={"Origin": "http://app.example",
                                                                "Host": "box.example"})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "http://app.example"


def test_bodies_over_the_limit_get_413_with_or_without_a_length() -> None:
    with serving({"chat": chat_model()}, max_body_bytes=2000) as server:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 3000}]}
        response = httpx.post(server.url + "/v1/chat/completions", json=big)
        assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
        chunks = (part for part in [b'{"model": "chat", "messages": [{"role": "user", "content": "',
                                    b"x" * 3000, b'"}]}'])
        chunked = httpx.post(server.url + "/v1/chat/completions", content=chunks,
                             headers={"content-type": "application/json"})
        assert "content-length" not in chunked.request.headers and chunked.status_code == 413
        assert httpx.post(server.url + "/v1/chat/completions", json=CHAT).status_code == 200


def test_prompt_and_output_limits_name_the_field() -> None:
    with serving({"chat": chat_model(), "sentiment": classifier()}, max_prompt_tokens=20, max_tokens=50, max_n=2,
                 max_inputs=3) as server:
        api = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as long:
            api.chat.completions.create(model="chat", messages=[{"role": "user", "content": "word " * 40}])
        assert long.value.body["code"] == "context_length_exceeded"  # type: ignore[index]
        with pytest.raises(openai.UnprocessableEntityError) as many:
            api.chat.completions.create(**{**CHAT, "max_tokens": 51})  # type: ignore[call-overload]
        assert many.value.body["param"] == "max_tokens"  # type: ignore[index]
        with pytest.raises(openai.UnprocessableEntityError) as choices:
            api.chat.completions.create(**{**CHAT, "n": 3})  # type: ignore[call-overload]
        assert choices.value.body["param"] == "n"  # type: ignore[index]
        inputs = httpx.post(server.url + "/v1/classify", json={"model": "sentiment", "input": ["a", "b", "c", "d"]})
        assert inputs.status_code == 422 and inputs.json()["error"]["param"] == "input"
        empty = httpx.post(server.url + "/v1/classify", json={"model": "sentiment", "input": ["a", " "]})
        assert empty.status_code == 422 and empty.json()["error"]["param"] == "input.1"
        extra = httpx.post(server.url + "/v1/classify", json={"model": "sentiment", "input": "a", "path": "/etc"})
        assert extra.status_code == 422 and extra.json()["error"]["param"] == "path"  # no field names a file


def test_settings_are_validated() -> None:
    with pytest.raises(ConfigError, match="slots"):
        ServeSettings(slots=0)
    with pytest.raises(ConfigError, match="max_queue"):
        ServeSettings(max_queue=0)
    with pytest.raises(ConfigError, match="api_key"):
        ServeSettings(api_key="has space")
    assert ServeSettings(slots=8, batching=False).decoding_slots == 1


def _gated_chat() -> tuple[object, threading.Event]:
    """A chat model whose forward passes wait for ``gate`` (the scheduler's thread holds its slot meanwhile)."""
    model = chat_model()
    gate = threading.Event()
    model.model.register_forward_pre_hook(lambda module, args: gate.wait(30) and None)
    return model, gate


def test_a_full_queue_answers_503_with_retry_after_and_the_server_stays_responsive() -> None:
    model, gate = _gated_chat()
    with serving({"chat": model}, slots=1, max_queue=1, retry_after=3) as server:  # type: ignore[dict-item]
        state = server.state
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(
            httpx.post(server.url + "/v1/chat/completions", json=CHAT, timeout=60).status_code)) for _ in range(2)]
        threads[0].start()
        assert wait_until(lambda: state.schedulers["chat"].stats().running == 1)  # type: ignore[attr-defined]
        threads[1].start()
        assert wait_until(lambda: state.schedulers["chat"].stats().queued == 1)  # type: ignore[attr-defined]
        assert httpx.get(server.url + "/health", timeout=5).status_code == 200  # the loop is free meanwhile
        refused = httpx.post(server.url + "/v1/chat/completions", json=CHAT)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "3"
        assert refused.json()["error"]["code"] == "queue_full"
        gate.set()
        for thread in threads:
            thread.join(60)
        assert results == [200, 200]


def test_a_client_that_disconnects_frees_its_slot_at_once() -> None:
    model = chat_model()
    config = GenerationConfig(max_new_tokens=200, eos_id=model.tokenizer.eos_id, stop_token_ids=model.stop_ids)
    prompt = next(text for text in ("Once upon a time", "A dog runs", "The film", "Tell me")
                  if len(generate(model.model, [model.encode(text)], config)[0][0].tokens) == 200)
    model.model.register_forward_pre_hook(lambda module, args: time.sleep(0.03))  # 200 tokens would take 6 s
    body = {"model": "chat", "prompt": prompt, "max_tokens": 200, "temperature": 0, "stream": True}
    with serving({"chat": model}, slots=1, max_queue=1) as server:
        scheduler = server.state.schedulers["chat"]  # type: ignore[attr-defined]
        with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=30) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")  # the first token arrived; then the client goes away
        assert wait_until(lambda: scheduler.stats().running == 0, 3.0)  # freed long before the 6 s the rest takes
        assert scheduler.stats().generated < 100
        answer = httpx.post(server.url + "/v1/completions", json={**body, "stream": False, "max_tokens": 3})
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 3
        metrics = httpx.get(server.url + "/metrics").text
        assert 'multihead_client_disconnects_total{route="/v1/completions"} 1.0' in metrics


def test_a_request_past_the_timeout_gets_504_and_leaves_its_slot() -> None:
    model, gate = _gated_chat()
    with serving({"chat": model}, request_timeout=0.5) as server:  # type: ignore[dict-item]
        scheduler = server.state.schedulers["chat"]  # type: ignore[attr-defined]
        late = httpx.post(server.url + "/v1/chat/completions", json=CHAT, timeout=30)
        assert late.status_code == 504 and late.json()["error"]["type"] == "timeout_error"
        with httpx.stream("POST", server.url + "/v1/chat/completions", json={**CHAT, "stream": True}) as stream:
            events = [line.removeprefix("data: ") for line in stream.iter_lines() if line]
        assert json.loads(events[-2])["error"]["code"] == "timeout" and events[-1] == "[DONE]"
        gate.set()
        assert wait_until(lambda: scheduler.stats().running == 0 and scheduler.stats().queued == 0)
