"""``AttentionMaps``: the attention of one example, per site, with the tokens on each axis.

This is what the pictures, the statistics, the HTML view and rollout read. Shape legend: ``H`` heads,
``Tq`` query tokens, ``Tk`` key tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from multihead.inspect.capture import AttentionCapture, Site

__all__ = ["AttentionMaps", "key_stack", "maps_from_capture"]


@dataclass
class AttentionMaps:
    """Per-head weights of one example.

    Args:
        weights: per site, ``(H, Tq, Tk)`` float weights (rows of real queries sum to 1).
        tokens: per stack (``encoder``, ``decoder``), the token strings of its sequence.
        special: per stack, True where the token is a special token ([CLS], [SEP], [BOS], [EOS], [PAD], ...).
        heads: the head numbers of the ``H`` axis (the captured heads, in order).
        title: a caption (e.g. the input text and the model's answer).
    """

    weights: dict[Site, Tensor]
    tokens: dict[str, list[str]]
    special: dict[str, list[bool]]
    heads: tuple[int, ...]
    title: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for site, weights in self.weights.items():
            if weights.dim() != 3:
                raise ValueError(f"weights of {site.name} must be (H, Tq, Tk), got shape {tuple(weights.shape)}")
            query, key = self.query_tokens(site), self.key_tokens(site)
            if weights.shape[1:] != (len(query), len(key)):
                raise ValueError(f"weights of {site.name} are {tuple(weights.shape)}; expected (H, {len(query)}, "
                                 f"{len(key)}) for its query and key tokens")
            if weights.shape[0] != len(self.heads):
                raise ValueError(f"weights of {site.name} have {weights.shape[0]} heads; heads={self.heads}")

    @property
    def sites(self) -> list[Site]:
        return sorted(self.weights)

    def query_tokens(self, site: Site) -> list[str]:
        return self.tokens[site.stack]

    def key_tokens(self, site: Site) -> list[str]:
        """Keys of cross-attention are the encoder's tokens; of self-attention, the site's own stack."""
        return self.tokens[self._key_stack(site)]

    def key_special(self, site: Site) -> list[bool]:
        return self.special[self._key_stack(site)]

    def layers(self, stack: str, kind: str) -> list[Site]:
        """The sites of one stack and kind, by layer."""
        return [site for site in self.sites if site.stack == stack and site.kind == kind]

    def groups(self) -> list[tuple[str, str]]:
        """``(stack, kind)`` pairs present, encoder first, self before cross."""
        return sorted({(site.stack, site.kind) for site in self.weights},
                      key=lambda pair: (pair[0] != "encoder", pair[0], pair[1] != "self"))

    def _key_stack(self, site: Site) -> str:
        return key_stack(site, self.tokens)


def key_stack(site: Site, stacks: Mapping[str, Any]) -> str:
    """The stack whose tokens are the keys of ``site``: its own for self-attention, the other for cross."""
    if site.kind == "self":
        return site.stack
    others = [stack for stack in stacks if stack != site.stack]
    if not others:
        raise ValueError(f"cross-attention site {site.name} needs the tokens of the stack it attends to")
    return "encoder" if "encoder" in others else others[0]


def maps_from_capture(
    capture: AttentionCapture,
    tokens: Mapping[str, Sequence[str]],
    special: Mapping[str, Sequence[bool]],
    *,
    row: int = 0,
    title: str = "",
) -> AttentionMaps:
    """The ``AttentionMaps`` of batch row ``row`` of a capture of one forward pass per site.

    Each stack's tokens must cover its captured length; longer captures (padding) are cut to the tokens.
    """
    weights: dict[Site, Tensor] = {}
    for site in capture.sites:
        recorded = capture.weights(site)[row]  # (H, Tq, Tk)
        query = len(tokens[site.stack])
        weights[site] = recorded[:, :query, : len(tokens[key_stack(site, tokens)])]  # (H, Tq, Tk)
    heads = capture.heads if capture.heads is not None else tuple(range(next(iter(weights.values())).shape[0]))
    return AttentionMaps(weights=weights, tokens={k: list(v) for k, v in tokens.items()},
                         special={k: list(v) for k, v in special.items()}, heads=heads, title=title)
