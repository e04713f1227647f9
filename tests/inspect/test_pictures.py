"""Head statistics against hand-computed heads; the pictures are written as PNG and SVG with the tokens."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from multihead.inspect import AttentionMaps, Site
from multihead.inspect.statistics import head_statistics, single_head_statistics

TOKENS = ["[CLS]", "a", "funny", "film", "[SEP]"]


def _previous_token_head(length: int) -> torch.Tensor:
    weights = torch.zeros(length, length)
    weights[0, 0] = 1.0
    for i in range(1, length):
        weights[i, i - 1] = 1.0
    return weights


def test_statistics_of_hand_made_heads() -> None:
    special = torch.tensor([True, False, False, False, True])
    uniform = single_head_statistics(torch.full((5, 5), 0.2), special, self_attention=True)
    assert uniform["entropy"] == pytest.approx(math.log(5))
    assert uniform["special"] == pytest.approx(0.4)
    assert uniform["distance"] == pytest.approx(sum(abs(i - j) for i in range(5) for j in range(5)) / 25 * 1.0)
    previous = single_head_statistics(_previous_token_head(5), special, self_attention=True)
    assert previous["entropy"] == pytest.approx(0.0)
    assert previous["previous"] == pytest.approx(1.0) and previous["offset"] == -1
    assert previous["distance"] == pytest.approx(4 / 5)
    cross = single_head_statistics(torch.full((2, 5), 0.2), special, self_attention=False)
    assert math.isnan(cross["distance"]) and math.isnan(cross["previous"]) and cross["special"] == pytest.approx(0.4)


def _maps() -> AttentionMaps:
    torch.manual_seed(0)
    random = torch.randn(2, 5, 5).softmax(dim=-1)
    layer_1 = torch.stack([_previous_token_head(5), torch.eye(5)])  # head 0 previous token, head 1 itself
    return AttentionMaps(
        weights={Site("encoder", 0, "self"): random, Site("encoder", 1, "self"): layer_1},
        tokens={"encoder": TOKENS}, special={"encoder": [True, False, False, False, True]}, heads=(0, 1),
        title="a funny film",
    )


def test_head_statistics_find_the_patterned_heads() -> None:
    (group,) = head_statistics(_maps())
    assert group.layers == (0, 1) and group.heads == (0, 1) and group.entropy.shape == (2, 2)
    assert group.previous[1, 0] == pytest.approx(1.0) and int(group.offset[1, 1]) == 0
    labels = group.labelled_heads()
    assert "encoder self L1H0: previous-token, 1.00" in labels and "encoder self L1H1: positional (+0), 1.00" in labels


def test_pictures_are_written_as_png_and_svg(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib is not installed (pip install matplotlib)")
    from multihead.inspect.pictures import plot_alignment, plot_head_grid, plot_rollout, plot_statistics
    from multihead.inspect.rollout import attention_flow, attention_rollout

    maps = _maps()
    plot_head_grid(maps, "encoder", "self", path=tmp_path / "grid")
    plot_statistics(head_statistics(maps), path=tmp_path / "stats.png")
    layers = [maps.weights[site] for site in maps.layers("encoder", "self")]
    plot_rollout(TOKENS, attention_rollout(layers), attention_flow(layers), raw=layers[-1].mean(0),
                 path=tmp_path / "rollout")
    for name in ("grid", "stats", "rollout"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        svg = (tmp_path / f"{name}.svg").read_text(encoding="utf-8")
        assert "<svg" in svg
    assert "funny" in (tmp_path / "grid.svg").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="no decoder cross-attention captured"):
        plot_alignment(maps)
    with pytest.raises(ValueError, match="no decoder self-attention captured"):
        plot_head_grid(maps, "decoder", "self")
