"""Head statistics: entropy, mean attention distance, share on special tokens, previous-token and positional heads.

Every statistic is a mean over the query rows of one example. Shape legend: ``L`` layers, ``H`` heads,
``Tq`` query tokens, ``Tk`` key tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from multihead.inspect.maps import AttentionMaps

__all__ = ["HeadStatistics", "head_statistics", "single_head_statistics"]

POSITIONAL = 0.5
"""A head is positional when, on average, more than this share of each row goes to one relative offset."""


@dataclass(frozen=True)
class HeadStatistics:
    """Statistics of every head of one ``(stack, kind)`` group, each ``(L, H)``.

    Attributes:
        entropy: nats; ``log Tk`` for uniform attention, 0 for attention on one key.
        distance: mean ``|i - j|`` weighted by attention (self-attention only; NaN for cross).
        special: share of attention on special tokens ([CLS], [SEP], [BOS], [EOS], ...).
        previous: share on the previous token ``j = i - 1`` (self-attention only; NaN for cross).
        offset: the relative offset ``j - i`` a head gives most attention to, among the offsets at least
            half of the rows have (self-attention only).
        offset_share: the mean share on that offset; above ``POSITIONAL`` the head is positional.
    """

    stack: str
    kind: str
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    entropy: Tensor
    distance: Tensor
    special: Tensor
    previous: Tensor
    offset: Tensor
    offset_share: Tensor

    def labelled_heads(self) -> list[str]:
        """``L<l>H<h>: previous-token`` / ``positional (+k)`` for the heads that fit a pattern."""
        labels = []
        for row, layer in enumerate(self.layers):
            for column, head in enumerate(self.heads):
                share, offset = float(self.offset_share[row, column]), int(self.offset[row, column])
                if share > POSITIONAL:
                    kind = "previous-token" if offset == -1 else f"positional ({offset:+d})"
                    labels.append(f"{self.stack} {self.kind} L{layer}H{head}: {kind}, {share:.2f}")
        return labels


def single_head_statistics(weights: Tensor, special: Tensor, *, self_attention: bool) -> dict[str, float]:
    """Statistics of one head's ``(Tq, Tk)`` weights; ``special`` is ``(Tk,)`` bool."""
    weights = weights.double()
    queries, keys = weights.shape
    entropy = -(weights * weights.clamp(min=1e-30).log()).sum(dim=-1).mean()
    share = weights[:, special].sum(dim=-1).mean() if bool(special.any()) else torch.tensor(0.0)
    values = {"entropy": float(entropy), "special": float(share), "distance": float("nan"),
              "previous": float("nan"), "offset": 0.0, "offset_share": float("nan")}
    if not self_attention:
        return values
    rows = torch.arange(queries)[:, None]
    columns = torch.arange(keys)[None, :]
    values["distance"] = float((weights * (rows - columns).abs()).sum(dim=-1).mean())
    best_share, best_offset = -1.0, 0
    for offset in range(-(queries - 1), keys):
        diagonal = torch.diagonal(weights, offset=offset)  # p[i, i + offset] over the rows that have it
        if 2 * diagonal.numel() < queries:  # an offset most rows lack says nothing about position
            continue
        mean = float(diagonal.mean())
        if offset == -1:
            values["previous"] = mean
        if mean > best_share:
            best_share, best_offset = mean, offset
    values["offset"], values["offset_share"] = float(best_offset), best_share
    return values


def head_statistics(maps: AttentionMaps) -> list[HeadStatistics]:
    """Statistics of every captured head, one ``HeadStatistics`` per ``(stack, kind)`` group."""
    groups = []
    for stack, kind in maps.groups():
        sites = maps.layers(stack, kind)
        names = ("entropy", "distance", "special", "previous", "offset", "offset_share")
        table: dict[str, list[list[float]]] = {name: [] for name in names}
        for site in sites:
            special = torch.tensor(maps.key_special(site), dtype=torch.bool)
            per_head = [single_head_statistics(weights, special, self_attention=kind == "self")
                        for weights in maps.weights[site]]
            for name, column in table.items():
                column.append([values[name] for values in per_head])
        groups.append(HeadStatistics(
            stack=stack, kind=kind, layers=tuple(site.layer for site in sites), heads=maps.heads,
            **{name: torch.tensor(rows, dtype=torch.float64) for name, rows in table.items()},
        ))
    return groups
