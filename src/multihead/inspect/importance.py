"""Head importance from head-mask gradients (Michel et al., 2019, "Are Sixteen Heads Really Better than One?").

A mask ``xi_h = 1`` multiplies each head's output before the output projection; the importance of head ``h``
is ``I_h = E_x |dL(x) / dxi_h|`` over a data set, and each attention module's scores are divided by their
L2 norm, as the paper's code does. Attention modules are named as ``TransformerConfig.pruned_heads`` names
them: ``encoder.L.self_attn``, ``decoder.L.self_attn``, ``decoder.L.cross_attn``.

Shape legend: ``B`` examples in a batch, ``H`` heads of one attention module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from multihead.attention import MultiHeadAttention
from multihead.errors import ConfigError
from multihead.models import Decoder, Encoder

__all__ = ["attention_modules", "head_importance", "head_masks", "normalize_per_module"]

Batch = Mapping[str, Tensor]
BatchLoss = Callable[[nn.Module, Any], Tensor]


def attention_modules(model: nn.Module) -> dict[str, MultiHeadAttention]:
    """Every attention module of ``model`` under its ``pruned_heads`` name, encoder first, in layer order."""
    found: dict[str, MultiHeadAttention] = {}
    for module in model.modules():
        stack = "encoder" if isinstance(module, Encoder) else "decoder" if isinstance(module, Decoder) else None
        if stack is None:
            continue
        for index, layer in enumerate(module.layers):
            for kind in ("self_attn", "cross_attn"):
                attention = getattr(layer, kind, None)
                if isinstance(attention, MultiHeadAttention):
                    name = f"{stack}.{index}.{kind}"
                    if name in found:
                        raise ConfigError(f"{type(model).__name__} has more than one {stack}; "
                                          "head names would be ambiguous")
                    found[name] = attention
    if not found:
        raise ConfigError(f"{type(model).__name__} has no Encoder or Decoder attention to mask or prune")
    return dict(sorted(found.items(), key=lambda item: (item[0].split(".")[0] != "encoder",
                                                        int(item[0].split(".")[1]), item[0])))


@contextmanager
def head_masks(model: nn.Module, masks: Mapping[str, Tensor]) -> Iterator[None]:
    """Set ``head_mask`` (``(H,)`` or ``(B, H)``, 1 = keep, 0 = remove) on the named modules; cleared after."""
    modules = attention_modules(model)
    unknown = sorted(set(masks) - set(modules))
    if unknown:
        raise ValueError(f"no attention modules {unknown} in this model; it has {list(modules)}")
    try:
        for name, mask in masks.items():
            if mask.shape[-1] != modules[name].n_heads:
                raise ValueError(f"the mask for {name} has {mask.shape[-1]} heads, the module has "
                                 f"{modules[name].n_heads}")
            modules[name].head_mask = mask
        yield
    finally:
        for name in masks:
            modules[name].head_mask = None


def head_importance(
    model: nn.Module,
    batches: Iterable[Any],
    loss: BatchLoss,
    *,
    keep: Mapping[str, Tensor] | None = None,
    normalize: bool = True,
) -> dict[str, Tensor]:
    """``I_h = E_x |dL(x)/dxi_h|`` for every head, one float32 tensor ``(H,)`` per attention module.

    Each example gets its own mask row (``(B, H)`` masks), so the gradient is taken per example, not of a
    batch's summed loss. The model runs in eval mode (no dropout); its weights get no gradients.

    Args:
        batches: batches whose tensors hold the examples on dimension 0 (``ids`` or ``source`` first).
        loss: ``(model, batch) -> the sum over the batch of each example's loss`` (e.g. a task's ``loss``).
        keep: masks ``(H,)`` applied while measuring (1 = kept, 0 = already removed): removed heads score 0.
        normalize: divide each module's scores by their L2 norm (the paper's per-layer normalisation).
    """
    modules = attention_modules(model)
    totals = {name: torch.zeros(module.n_heads, dtype=torch.float64) for name, module in modules.items()}
    keep = {name: torch.ones(module.n_heads) if keep is None or name not in keep else keep[name].float()
            for name, module in modules.items()}
    examples, training = 0, model.training
    model.eval()
    try:
        for batch in batches:
            rows = _rows(batch)
            weight = next(model.parameters())
            masks = {name: keep[name].to(weight.device, weight.dtype).expand(rows, -1).clone().requires_grad_(True)
                     for name in modules}  # (B, H) each
            with head_masks(model, masks):
                value = loss(model, batch)
            grads = torch.autograd.grad(value, list(masks.values()), allow_unused=True)
            for name, grad in zip(masks, grads, strict=True):
                if grad is not None:
                    totals[name] += grad.detach().abs().sum(0).double().cpu()
            examples += rows
    finally:
        model.train(training)
    if examples == 0:
        raise ConfigError("head_importance needs at least one example; the batches were empty")
    scores = {name: (total / examples * keep[name].double()).float() for name, total in totals.items()}
    return normalize_per_module(scores) if normalize else scores


def normalize_per_module(scores: Mapping[str, Tensor], *, eps: float = 1e-20) -> dict[str, Tensor]:
    """Each module's scores divided by their L2 norm (``eps`` keeps an all-zero module at zero)."""
    return {name: value / (value.norm() + eps) for name, value in scores.items()}


def _rows(batch: Any) -> int:
    """Examples in a batch: dimension 0 of its first tensor."""
    tensors = batch.values() if isinstance(batch, Mapping) else batch
    for value in tensors:
        if isinstance(value, Tensor):
            return int(value.shape[0])
    raise ValueError("a batch must hold at least one tensor with the examples on dimension 0")
