"""Head pruning: remove heads physically (smaller projections, a faster model that saves and loads), and the
curve of a metric against the share of heads pruned, lowest importance first (Michel et al., 2019).

Heads are named by their original index in each attention module (``encoder.0.self_attn`` etc.), as
``TransformerConfig.pruned_heads`` records them.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from multihead.errors import ConfigError
from multihead.inspect.importance import attention_modules, head_masks
from multihead.models import TransformerConfig

__all__ = ["PruningStep", "heads_to_prune", "largest_within", "masks_without", "prune_heads", "pruning_curve"]

Removed = dict[str, tuple[int, ...]]


def prune_heads(model: nn.Module, heads: Mapping[str, Iterable[int]]) -> nn.Module:
    """A copy of ``model`` without ``heads`` (``{"encoder.0.self_attn": [1, 3], ...}``, original indices).

    The copy's ``config.pruned_heads`` lists every head removed so far, so ``save_model_dir`` /
    ``load_model_dir`` rebuild it. A module that loses every head keeps only ``out_proj``'s bias.
    Grouped-query attention prunes whole key/value groups (other choices raise ``ValueError``);
    ALiBi models raise ``ValueError``.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, TransformerConfig):
        raise ConfigError(f"prune_heads needs a multihead Transformer model with a TransformerConfig, "
                          f"got {type(model).__name__}")
    merged = {name: set(ids) for name, ids in (config.pruned_heads or {}).items()}
    for name, ids in heads.items():
        merged.setdefault(name, set()).update(int(i) for i in ids)
    new_config = config.replace(pruned_heads={name: sorted(ids) for name, ids in merged.items()})
    pruned = copy.deepcopy(model)
    modules = attention_modules(pruned)
    unknown = sorted(set(heads) - set(modules))
    if unknown:
        raise ValueError(f"no attention modules {unknown} in this model; it has {list(modules)}")
    for name, ids in heads.items():
        modules[name].prune_heads(int(i) for i in ids)
    for module in pruned.modules():  # every stack shares the one config object
        if isinstance(getattr(module, "config", None), TransformerConfig):
            module.config = new_config
    return pruned


def masks_without(model: nn.Module, removed: Mapping[str, Iterable[int]]) -> dict[str, Tensor]:
    """Head masks ``(H,)`` per module: 0 for the heads in ``removed`` (original indices), 1 for the others."""
    masks = {}
    for name, module in attention_modules(model).items():
        gone = set(removed.get(name, ()))
        masks[name] = torch.tensor([0.0 if head in gone else 1.0 for head in module.head_ids])
    return masks


@dataclass
class PruningStep:
    """One point of a pruning curve: the heads removed so far and the metrics measured with them masked."""

    pruned: int
    fraction: float
    removed: Removed
    metrics: dict[str, float] = field(default_factory=dict)


def pruning_curve(
    model: nn.Module,
    *,
    evaluate: Callable[[nn.Module], dict[str, float]],
    importance: Callable[[nn.Module, Mapping[str, Tensor]], Mapping[str, Tensor]],
    step: float = 0.1,
    recompute: bool = True,
    up_to: float = 1.0,
    log: Callable[[str], None] | None = None,
) -> list[PruningStep]:
    """Prune heads iteratively, lowest importance first, and evaluate after each step (heads masked).

    Args:
        evaluate: model -> metrics; called with the heads removed so far masked (``head_masks``).
        importance: ``(model, keep masks) -> scores (H,) per module`` (e.g. ``head_importance``); removed
            heads must score 0 and are never chosen again.
        step: the share of all heads removed at each step (the last step removes every head).
        recompute: recompute importance with the removed heads masked before each step (the paper's
            code does); ``False`` ranks every head once, on the full model.
        up_to: stop after this share of the heads (a fine ``step`` over the interesting part of the curve).
    """
    if not 0.0 < step <= 1.0 or not 0.0 <= up_to <= 1.0:
        raise ConfigError(f"step must be in (0, 1] and up_to in [0, 1], got {step} and {up_to}")
    modules = attention_modules(model)
    total = sum(module.n_heads for module in modules.values())
    targets = sorted({min(total, round(total * step * k)) for k in range(int(1 / step + 1e-9) + 2)} | {total})
    targets = [t for t in targets if t <= up_to * total + 1e-9]
    removed: dict[str, set[int]] = {name: set() for name in modules}
    steps: list[PruningStep] = []
    scores: Mapping[str, Tensor] | None = None
    for target in targets:
        count = sum(len(ids) for ids in removed.values())
        if target > count:
            if scores is None or recompute:
                scores = importance(model, masks_without(model, removed))
            ranked = sorted((float(scores[name][position]), name, head)
                            for name, module in modules.items()
                            for position, head in enumerate(module.head_ids) if head not in removed[name])
            for _, name, head in ranked[:target - count]:
                removed[name].add(head)
        chosen = {name: tuple(sorted(ids)) for name, ids in removed.items() if ids}
        with head_masks(model, masks_without(model, chosen)):
            metrics = evaluate(model)
        steps.append(PruningStep(pruned=target, fraction=target / total, removed=chosen, metrics=metrics))
        if log is not None:
            log(f"pruned {target}/{total} heads: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    return steps


def heads_to_prune(steps: list[PruningStep], fraction: float) -> Removed:
    """The heads removed at the curve's largest step whose share does not exceed ``fraction``."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"the fraction of heads to prune must be in [0, 1], got {fraction}")
    eligible = [s for s in steps if s.fraction <= fraction + 1e-9]
    if not eligible:
        raise ConfigError(f"no step of the curve prunes at most {fraction:.0%} of the heads")
    return max(eligible, key=lambda s: s.pruned).removed


def largest_within(steps: list[PruningStep], key: str, max_drop: float, *, scale: float = 1.0) -> PruningStep:
    """The last step before ``metrics[key] * scale`` first falls more than ``max_drop`` below the first step's
    (e.g. ``scale=100`` for accuracy in points)."""
    if not steps or key not in steps[0].metrics:
        raise ConfigError(f"the curve has no metric {key!r:.80}; it has {sorted(steps[0].metrics) if steps else []}")
    floor = steps[0].metrics[key] * scale - max_drop
    chosen = steps[0]
    for step in steps[1:]:
        if step.metrics[key] * scale < floor - 1e-9:
            break
        chosen = step
    return chosen
