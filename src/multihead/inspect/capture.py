"""``capture_attention``: record the attention weights of chosen layers and heads during any forward pass.

The capture wraps only the chosen ``MultiHeadAttention`` modules with forward hooks: a pre-hook asks
them for their weights (``need_weights=True``, the explicit path) and a hook keeps a copy. Every other
module keeps running the fused SDPA kernel, and every hook is removed on exit.

Shape legend: ``B`` batch (rows), ``H`` captured heads, ``Tq`` query length, ``Tk`` key length.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from multihead.attention import MultiHeadAttention
from multihead.errors import ConfigError
from multihead.models.decoder import Decoder
from multihead.models.encoder import Encoder

__all__ = ["AttentionCapture", "Kind", "Site", "attention_sites", "capture_attention"]

Kind = Literal["self", "cross"]


@dataclass(frozen=True, order=True)
class Site:
    """One attention module: ``stack`` (``encoder`` or ``decoder``, the module path of its stack), layer, kind."""

    stack: str
    layer: int
    kind: Kind

    @property
    def name(self) -> str:
        return f"{self.stack}.{self.layer}.{self.kind}"


def attention_sites(model: nn.Module) -> dict[Site, MultiHeadAttention]:
    """Every attention module of a multihead model, keyed by site, in the order encoder, decoder.

    Stacks are the ``Encoder`` and ``Decoder`` modules inside ``model``, named by their attribute path
    (``encoder``, ``decoder``; a bare ``Encoder`` is ``encoder``).
    """
    sites: dict[Site, MultiHeadAttention] = {}
    for path, module in model.named_modules():
        if not isinstance(module, Encoder | Decoder):
            continue
        stack = path or ("encoder" if isinstance(module, Encoder) else "decoder")
        for index, layer in enumerate(module.layers):
            sites[Site(stack, index, "self")] = layer.self_attn
            cross = getattr(layer, "cross_attn", None)
            if cross is not None:
                sites[Site(stack, index, "cross")] = cross
    if not sites:
        raise ConfigError(f"{type(model).__name__} has no multihead Encoder or Decoder; nothing to capture")
    return sites


class AttentionCapture:
    """A context manager that records per-head weights of the chosen sites; see :func:`capture_attention`.

    After (or during) the ``with`` block, ``calls[site]`` holds one ``(B, H, Tq, Tk)`` float32 tensor per
    forward call of that site, in call order (one per decoding step during generation).
    """

    def __init__(self, model: nn.Module, sites: Sequence[Site], heads: Sequence[int] | None) -> None:
        modules = attention_sites(model)
        self.sites = list(sites)
        self.heads = None if heads is None else tuple(heads)
        self.modules = {site: modules[site] for site in self.sites}
        self.calls: dict[Site, list[Tensor]] = {site: [] for site in self.sites}
        self._handles: list[RemovableHandle] = []
        self._caller_asked: dict[int, bool] = {}

    def __enter__(self) -> AttentionCapture:
        if self._handles:
            raise RuntimeError("this AttentionCapture is already active; use a new one for a nested capture")
        for site, module in self.modules.items():
            self._handles.append(module.register_forward_pre_hook(self._ask_weights, with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._recorder(site), with_kwargs=True))
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
                 ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def clear(self) -> None:
        """Forget what was recorded (the hooks stay in place)."""
        for recorded in self.calls.values():
            recorded.clear()

    def weights(self, site: Site) -> Tensor:
        """The weights of the one forward call of ``site``: ``(B, H, Tq, Tk)``."""
        if site not in self.calls:
            raise KeyError(f"site {site.name} was not captured; captured: {[s.name for s in self.sites]}")
        recorded = self.calls[site]
        if len(recorded) != 1:
            raise ValueError(f"site {site.name} ran {len(recorded)} times; expected 1 (read .calls for generation)")
        return recorded[0]

    def _ask_weights(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
                     ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        self._caller_asked[id(module)] = bool(kwargs.get("need_weights", False))
        return args, {**kwargs, "need_weights": True}

    def _recorder(self, site: Site) -> Callable[..., tuple[Tensor, Tensor | None]]:
        def record(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any],
                   output: tuple[Tensor, Tensor | None]) -> tuple[Tensor, Tensor | None]:
            out, weights = output
            assert weights is not None
            kept = weights.detach().float()  # (B, H_all, Tq, Tk)
            if self.heads is not None:
                kept = kept[:, list(self.heads)]  # (B, H, Tq, Tk)
            packing = kwargs.get("packing")
            if packing is not None:  # rows of padded queries attend nothing real: zero them
                real = torch.zeros(packing.batch * packing.length, dtype=torch.bool, device=kept.device)
                real[packing.index] = True
                kept = kept * real.view(packing.batch, 1, packing.length, 1)  # (B, H, Tq, Tk)
            self.calls[site].append(kept.clone())
            return out, (weights if self._caller_asked.pop(id(module), False) else None)

        return record


def capture_attention(
    model: nn.Module,
    *,
    layers: Iterable[int] | None = None,
    heads: Iterable[int] | None = None,
    kinds: Iterable[Kind] = ("self", "cross"),
    stacks: Iterable[str] | None = None,
) -> AttentionCapture:
    """Record the attention weights of chosen layers and heads of ``model``.

    ```python
    with capture_attention(model, layers=[0], heads=[1, 2]) as captured:
        model(ids)
    weights = captured.weights(Site("encoder", 0, "self"))  # (B, 2, T, T)
    ```

    Args:
        model: any multihead model (classifier, language model, encoder-decoder, ...).
        layers: layer numbers to capture in every stack (default all); each must exist in some stack.
        heads: head numbers to keep (default all); weights keep them in this order.
        kinds: ``self`` and/or ``cross`` attention.
        stacks: ``encoder`` and/or ``decoder`` (default both).

    Returns:
        the capture, to be entered with ``with``.
    """
    available = attention_sites(model)
    kinds = tuple(kinds)
    for kind in kinds:
        if kind not in ("self", "cross"):
            raise ConfigError(f"kinds must hold 'self' or 'cross', got {kind!r:.80}")
    stack_names = sorted({site.stack for site in available})
    chosen_stacks = stack_names if stacks is None else list(stacks)
    for stack in chosen_stacks:
        if stack not in stack_names:
            raise ConfigError(f"stack {stack!r:.80} is not in this model; expected one of {stack_names}")
    deepest = max(site.layer for site in available) + 1
    chosen_layers = None if layers is None else sorted(set(layers))
    for layer in chosen_layers or []:
        if not isinstance(layer, int) or not 0 <= layer < deepest:
            raise ConfigError(f"layer {layer!r:.80} does not exist; expected 0..{deepest - 1}")
    sites = [site for site in available if site.kind in kinds and site.stack in chosen_stacks
             and (chosen_layers is None or site.layer in chosen_layers)]
    if not sites:
        raise ConfigError(f"nothing to capture: no {'/'.join(kinds)} attention in stacks {chosen_stacks} "
                          f"at layers {chosen_layers}")
    chosen_heads = None if heads is None else list(heads)
    if chosen_heads is not None:
        fewest = min(available[site].n_heads for site in sites)
        bad = [head for head in chosen_heads if not isinstance(head, int) or not 0 <= head < fewest]
        if bad or not chosen_heads:
            raise ConfigError(f"heads must be a non-empty list of head numbers in 0..{fewest - 1}, got {chosen_heads}")
    return AttentionCapture(model, sites, chosen_heads)
