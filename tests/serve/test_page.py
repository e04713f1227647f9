"""The playground page in a real headless Chromium (Playwright): a prompt typed and sent with Enter, the answer
arriving in pieces and ending as the server's greedy answer, the attention view of the answer, a classifier's
bars, and no console errors."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from tiny_serve import chat_model, classifier, serving

from multihead.generation import GenerationConfig, generate

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RECORD = """
window.__texts = [];
document.addEventListener("DOMContentLoaded", () => new MutationObserver(() => {
  const answers = document.querySelectorAll("#log .message.assistant .text");
  const last = answers[answers.length - 1];
  if (last && window.__texts[window.__texts.length - 1] !== last.textContent) window.__texts.push(last.textContent);
}).observe(document.body, { subtree: true, childList: true, characterData: true }));
"""


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium (CI: apt-get install -y chromium)")
def test_playground_streams_an_answer_and_shows_its_attention() -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    model = chat_model()
    config = GenerationConfig(max_new_tokens=24, eos_id=model.tokenizer.eos_id, stop_token_ids=model.stop_ids)
    prompt = model.encode(model.render([{"role": "user", "content": "Tell me a story"}]))
    expected = model.decode(generate(model.model, [prompt], config)[0][0].tokens)
    model.model.register_forward_pre_hook(lambda module, args: time.sleep(0.03))  # a visible stream
    messages: list[str] = []
    with serving({"chat": model, "sentiment": classifier()}) as server, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = browser.new_context().new_page()
            page.set_default_timeout(20_000)
            page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
            page.add_init_script(RECORD)
            page.goto(server.url + "/")
            page.wait_for_function("document.querySelectorAll('#model option').length === 2")
            assert page.input_value("#model") == "chat" and page.inner_text("#kind") == "generation"
            page.click("summary")
            page.fill("#temperature", "0")
            page.fill("#max-tokens", "24")
            page.fill("#prompt", "Tell me a story")
            page.press("#prompt", "Enter")
            page.wait_for_function("document.querySelector('#status').textContent.includes('tokens in')")
            answer = page.locator("#log .message.assistant .text").last.text_content()
            assert answer == expected
            texts = page.evaluate("window.__texts")
            assert len(texts) >= 4 and texts[-1] == expected  # it arrived in pieces
            assert all(expected.startswith(text) for text in texts)
            page.click("#show-attention")
            frame = page.frame_locator("#attention-frame")
            frame.locator("#head-view line").first.wait_for(state="attached")
            assert frame.locator("#model-view .model-cell").count() == 2 * 4  # 2 layers x 4 heads
            assert frame.locator("#head-view text").count() > 2 * len(prompt)  # prompt and answer tokens
            page.select_option("#model", "sentiment")
            assert page.inner_text("#send") == "Run"
            page.fill("#prompt", "The film was gripping and funny.")
            page.keyboard.press("Enter")
            page.locator("#log .bar-row").first.wait_for()
            assert page.locator("#log .bar-row").count() == 3
        finally:
            browser.close()
    errors = [message for message in messages if message.startswith(("error", "pageerror"))]
    assert not errors, errors
