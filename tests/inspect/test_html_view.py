"""The HTML view: its data and, in a real headless Chromium (Playwright), no console errors and redraws on choice."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from multihead.inspect import AttentionMaps, Site
from multihead.inspect.html_view import AttentionView, view_data

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _maps() -> AttentionMaps:
    """Two encoder layers, one decoder layer with self and cross attention, 3 heads, random weights."""
    torch.manual_seed(0)
    source, target = ["A", "dog", "</script>", "[EOS]"], ["[BOS]", "Ein", "Hund"]

    def weights(queries: int, keys: int, causal: bool = False) -> torch.Tensor:
        scores = torch.randn(3, queries, keys) * 3
        if causal:
            scores = scores.masked_fill(torch.ones(queries, keys, dtype=torch.bool).triu(1), float("-inf"))
        return scores.softmax(dim=-1)  # (H, Tq, Tk)

    return AttentionMaps(
        weights={Site("encoder", 0, "self"): weights(4, 4), Site("encoder", 1, "self"): weights(4, 4),
                 Site("decoder", 0, "self"): weights(3, 3, causal=True), Site("decoder", 0, "cross"): weights(3, 4)},
        tokens={"encoder": source, "decoder": target},
        special={"encoder": [False, False, False, True], "decoder": [True, False, False]},
        heads=(0, 1, 2), title="A dog </script> -> Ein Hund",
    )


def test_view_data_holds_every_group_rounded() -> None:
    maps = _maps()
    data = view_data(maps)
    assert [g["label"] for g in data["groups"]] == ["encoder self-attention", "decoder self-attention",
                                                    "decoder cross-attention"]
    cross = data["groups"][2]
    assert cross["queries"] == ["[BOS]", "Ein", "Hund"] and cross["keys"][-1] == "[EOS]"
    assert cross["key_special"] == [False, False, False, True]
    expected = maps.weights[Site("decoder", 0, "cross")][1, 2, 3]
    assert cross["weights"][0][1][2][3] == round(float(expected), 3)
    assert len(data["groups"][0]["weights"]) == 2  # two encoder layers


def test_page_is_self_contained_and_embeds_in_an_iframe() -> None:
    view = AttentionView(_maps())
    page = view.to_html()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing loaded from the network
    block = page.split('id="attention-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(block)["groups"][0]["keys"][2] == "</script>"  # the token did not end the data block
    frame = view._repr_html_()
    assert frame.startswith("<iframe srcdoc=") and html.unescape(frame.split('srcdoc="', 1)[1].split('"', 1)[0]) == page
    with pytest.raises(ValueError, match="height must be positive"):
        AttentionView(_maps(), height=0)


def _line_state(page: object) -> list[str]:
    return page.eval_on_selector_all(  # type: ignore[attr-defined]
        "#head-view line",
        "lines => lines.map(l => [l.dataset.head, l.dataset.query, l.dataset.key, l.getAttribute('stroke-opacity')]"
        ".join(':'))")


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="no chromium (CI: apt-get install -y chromium)")
def test_view_in_headless_chromium(tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    file = AttentionView(_maps()).save(tmp_path / "view.html")
    messages: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
            page.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
            page.goto(file.as_uri())
            first = _line_state(page)
            assert first, "the head view drew no lines"
            assert page.locator("#model-view .model-cell").count() == 2 * 3  # 2 encoder layers x 3 heads
            page.select_option("#layer", "1")
            second = _line_state(page)
            assert second and second != first  # another layer draws other lines
            page.uncheck("#head-1")
            third = _line_state(page)
            assert third and all(not line.startswith("1:") for line in third) and len(third) < len(second)
            page.select_option("#group", "2")  # cross-attention: 3 target rows to 4 source tokens
            cross = _line_state(page)
            assert cross and {line.split(":")[1] for line in cross} <= {"0", "1", "2"}
            page.locator("#model-view .model-cell").nth(2).click()  # layer 0, head 2 only
            assert {line.split(":")[0] for line in _line_state(page)} == {"2"}
            page.hover("#head-view text >> nth=1")  # the query token "Ein": only its lines stay
            assert {line.split(":")[1] for line in _line_state(page)} == {"1"}
        finally:
            browser.close()
    errors = [message for message in messages if message.startswith(("error", "pageerror"))]
    assert not errors, errors
