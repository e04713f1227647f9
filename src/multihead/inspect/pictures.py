"""Pictures with matplotlib (Agg backend): head grids, cross-attention alignment, head statistics, rollout.

Every function returns the ``Figure`` and, given ``path`` (without or with a suffix), writes it as PNG
and SVG next to each other. matplotlib is optional: ``pip install matplotlib`` (or ``multihead[plots]``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from multihead.inspect.maps import AttentionMaps
from multihead.inspect.statistics import HeadStatistics

__all__ = ["plot_alignment", "plot_head_grid", "plot_rollout", "plot_statistics", "save_figure"]

_CELL = 1.9  # inches per heatmap of a grid


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError("pictures need matplotlib: pip install matplotlib (or multihead[plots])",
                                  name="matplotlib") from error
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure: Any, path: str | Path, *, formats: Sequence[str] = ("png", "svg"), dpi: int = 110
                ) -> list[Path]:
    """Write ``figure`` as ``path.png`` and ``path.svg`` (any suffix of ``path`` is replaced); returns the files."""
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".png", ".svg", ".pdf") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in formats:
        target = base.with_name(f"{base.name}.{kind}")
        figure.savefig(target, dpi=dpi, bbox_inches="tight", metadata={"Date": None} if kind == "svg" else None)
        written.append(target)
    return written


def _finish(figure: Any, path: str | Path | None) -> Any:
    if path is not None:
        save_figure(figure, path)
    _pyplot().close(figure)
    return figure


def _ticks(axis: Any, rows: Sequence[str] | None, columns: Sequence[str] | None, size: float) -> None:
    axis.set_xticks(range(len(columns or [])), columns or [], rotation=90, fontsize=size)
    axis.set_yticks(range(len(rows or [])), rows or [], fontsize=size)


def plot_head_grid(maps: AttentionMaps, stack: str, kind: str, *, path: str | Path | None = None) -> Any:
    """One heatmap per layer (rows) and head (columns) of one ``(stack, kind)`` group, tokens on the axes
    (queries down the left column, keys along the bottom row)."""
    plt = _pyplot()
    sites = maps.layers(stack, kind)
    if not sites:
        raise ValueError(f"no {stack} {kind}-attention captured; captured: {[s.name for s in maps.sites]}")
    rows, columns = len(sites), len(maps.heads)
    queries, keys = maps.query_tokens(sites[0]), maps.key_tokens(sites[0])
    size = max(4.0, min(8.0, 160 / max(len(queries), len(keys))))
    figure, axes = plt.subplots(rows, columns, figsize=(_CELL * columns + 1, _CELL * rows + 1), squeeze=False)
    for row, site in enumerate(sites):
        for column, head in enumerate(maps.heads):
            axis = axes[row][column]
            axis.imshow(maps.weights[site][column].numpy(), cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
            _ticks(axis, queries if column == 0 else None, keys if row == rows - 1 else None, size)
            axis.set_title(f"layer {site.layer} head {head}", fontsize=8)
    figure.suptitle(f"{stack} {kind}-attention" + (f": {maps.title}" if maps.title else ""), fontsize=10)
    figure.tight_layout()
    return _finish(figure, path)


def plot_alignment(maps: AttentionMaps, *, layer: int | None = None, stack: str = "decoder",
                   path: str | Path | None = None) -> Any:
    """Cross-attention of a translation, heads averaged: output tokens down, source tokens across. One
    panel per layer, or only ``layer``."""
    plt = _pyplot()
    sites = [site for site in maps.layers(stack, "cross") if layer is None or site.layer == layer]
    if not sites:
        raise ValueError(f"no {stack} cross-attention captured at layer {layer}; captured: "
                         f"{[s.name for s in maps.sites]}")
    queries, keys = maps.query_tokens(sites[0]), maps.key_tokens(sites[0])
    width = max(3.0, 0.32 * len(keys) + 1.5)
    figure, axes = plt.subplots(1, len(sites), figsize=(width * len(sites), max(3.0, 0.3 * len(queries) + 1.5)),
                                squeeze=False)
    for axis, site in zip(axes[0], sites, strict=True):
        image = axis.imshow(maps.weights[site].mean(dim=0).numpy(), cmap="Greens", vmin=0.0, vmax=1.0)
        _ticks(axis, queries, keys, 8)
        axis.set_title(f"cross-attention, layer {site.layer}, heads averaged", fontsize=9)
    figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8)
    if maps.title:
        figure.suptitle(maps.title, fontsize=10)
    return _finish(figure, path)


_PANELS = (("entropy", "entropy (nats)", "viridis"), ("distance", "mean distance |i - j|", "magma"),
           ("special", "share on special tokens", "Oranges"), ("previous", "share on previous token", "Purples"),
           ("offset_share", "share on its top offset", "Reds"))


def plot_statistics(statistics: Sequence[HeadStatistics], *, path: str | Path | None = None, title: str = ""
                    ) -> Any:
    """One row per ``(stack, kind)`` group, one panel per statistic, layers down and heads across, values
    written in each cell (the top offset is written under its share)."""
    plt = _pyplot()
    if not statistics:
        raise ValueError("no head statistics to plot")
    figure, axes = plt.subplots(len(statistics), len(_PANELS), squeeze=False,
                                figsize=(3.0 * len(_PANELS), 0.5 * sum(len(s.layers) for s in statistics) + 2.0))
    for row, group in enumerate(statistics):
        for column, (name, label, colours) in enumerate(_PANELS):
            axis = axes[row][column]
            values: Tensor = getattr(group, name)
            axis.imshow(values.numpy(), cmap=colours, aspect="auto")
            for (layer, head), value in _cells(values):
                text = "-" if math.isnan(value) else f"{value:.2f}"
                if name == "offset_share" and not math.isnan(value):
                    text += f"\n{int(group.offset[layer, head]):+d}"
                axis.text(head, layer, text, ha="center", va="center", fontsize=7,
                          bbox={"facecolor": "white", "alpha": 0.6, "pad": 0.5, "linewidth": 0})
            axis.set_xticks(range(len(group.heads)), [f"h{h}" for h in group.heads], fontsize=7)
            axis.set_yticks(range(len(group.layers)), [f"L{layer}" for layer in group.layers], fontsize=7)
            axis.set_title(f"{group.stack} {group.kind}: {label}", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _finish(figure, path)


def _cells(values: Tensor) -> list[tuple[tuple[int, int], float]]:
    return [((row, column), float(values[row, column])) for row in range(values.shape[0])
            for column in range(values.shape[1])]


def plot_rollout(tokens: Sequence[str], rollout: Tensor, flow: Tensor | None = None, *,
                 raw: Tensor | None = None, path: str | Path | None = None, title: str = "") -> Any:
    """Side-by-side ``(T, T)`` maps: the last layer's raw attention (heads averaged, if given), rollout and flow;
    output tokens down, input tokens across."""
    plt = _pyplot()
    panels = [(name, matrix) for name, matrix in (("last layer, raw (heads averaged)", raw), ("rollout", rollout),
                                                  ("flow", flow)) if matrix is not None]
    side = max(3.0, 0.3 * len(tokens) + 1.5)
    figure, axes = plt.subplots(1, len(panels), figsize=(side * len(panels), side), squeeze=False)
    for axis, (name, matrix) in zip(axes[0], panels, strict=True):
        axis.imshow(matrix.float().numpy(), cmap="Blues", vmin=0.0)
        _ticks(axis, tokens, tokens, 8)
        axis.set_title(name, fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _finish(figure, path)
