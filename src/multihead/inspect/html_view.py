"""``AttentionView``: one self-contained HTML file (inline data, script and style; no network, no Jupyter)
with a head view and a model view of ``AttentionMaps``; in a notebook it shows itself in an iframe."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from multihead.atomic import write_text_atomic
from multihead.inspect.html_assets import SCRIPT, STYLE
from multihead.inspect.maps import AttentionMaps

__all__ = ["AttentionView", "view_data"]


def view_data(maps: AttentionMaps, *, digits: int = 3) -> dict[str, Any]:
    """The JSON the page's script reads: per ``(stack, kind)`` group, tokens, layers, heads and the
    weights ``[layer][head][query][key]`` rounded to ``digits`` decimals."""
    groups = []
    for stack, kind in maps.groups():
        sites = maps.layers(stack, kind)
        first = sites[0]
        weights = [[[[round(float(value), digits) for value in row] for row in head] for head in maps.weights[site]]
                   for site in sites]
        groups.append({
            "label": f"{stack} {kind}-attention", "stack": stack, "kind": kind,
            "layers": [site.layer for site in sites], "heads": list(maps.heads),
            "queries": maps.query_tokens(first), "keys": maps.key_tokens(first),
            "query_special": maps.special[stack], "key_special": maps.key_special(first),
            "weights": weights,
        })
    return {"title": maps.title, "groups": groups}


class AttentionView:
    """The head view and model view of one example.

    ```python
    view = AttentionView(maps)
    view.save("attention.html")   # open it in any browser, offline
    view                          # in Jupyter: shown inline (an iframe, so the script runs)
    ```
    """

    def __init__(self, maps: AttentionMaps, *, height: int = 640) -> None:
        if not maps.weights:
            raise ValueError("AttentionMaps hold no weights; capture at least one site")
        if height <= 0:
            raise ValueError(f"height must be positive, got {height}")
        self.maps = maps
        self.height = height

    def to_html(self) -> str:
        """The whole page as one string."""
        data = json.dumps(view_data(self.maps), ensure_ascii=False, separators=(",", ":"))
        data = data.replace("</", "<\\/")  # a token like "</script>" cannot end the data block
        title = html.escape(self.maps.title or "attention")
        return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{STYLE}</style>
</head>
<body>
<h1>{title}</h1>
<div class="controls">
  <label>attention <select id="group"></select></label>
  <label>layer <select id="layer"></select></label>
  <span id="heads"></span>
</div>
<div class="views">
  <div><div class="caption">head view: queries left, keys right; hover a token on the left</div>
    <svg id="head-view" xmlns="http://www.w3.org/2000/svg"></svg></div>
  <div><div class="caption">model view: every layer and head; click one to show it</div>
    <svg id="model-view" xmlns="http://www.w3.org/2000/svg"></svg></div>
</div>
<script type="application/json" id="attention-data">{data}</script>
<script>{SCRIPT}</script>
</body>
</html>
"""

    def save(self, path: str | Path) -> Path:
        """Write the page to ``path`` (UTF-8) and return it."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(target, self.to_html())
        return target

    def _repr_html_(self) -> str:
        """Jupyter: the page inside an iframe's ``srcdoc``, where its script runs."""
        page = html.escape(self.to_html(), quote=True)
        return (f'<iframe srcdoc="{page}" style="width: 100%; height: {self.height}px; border: 0" '
                'sandbox="allow-scripts"></iframe>')
