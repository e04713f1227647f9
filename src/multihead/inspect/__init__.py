"""See the heads: capture attention, pictures, head statistics, an HTML view, rollout and flow.

```python
from multihead.inspect import Site, capture_attention
with capture_attention(model, layers=[0]) as captured:
    model(ids)
weights = captured.weights(Site("encoder", 0, "self"))  # (B, H, T, T)
```

Head importance and pruning (Michel et al., 2019): ``head_importance``, ``prune_heads``, ``pruning_curve``.

The pictures (``multihead.inspect.pictures``) need matplotlib; everything else needs only torch.
"""

from multihead.inspect.capture import AttentionCapture, Site, attention_sites, capture_attention
from multihead.inspect.decoding import DecodedAttention, generate_with_attention, teacher_forced_attention
from multihead.inspect.html_view import AttentionView, view_data
from multihead.inspect.importance import attention_modules, head_importance, head_masks
from multihead.inspect.maps import AttentionMaps, maps_from_capture
from multihead.inspect.pruning import PruningStep, heads_to_prune, prune_heads, pruning_curve
from multihead.inspect.rollout import attention_flow, attention_rollout, max_flow, residual_attention
from multihead.inspect.statistics import HeadStatistics, head_statistics
from multihead.inspect.texts import attention_for_text, display_tokens

__all__ = [
    "AttentionCapture",
    "AttentionMaps",
    "AttentionView",
    "DecodedAttention",
    "HeadStatistics",
    "PruningStep",
    "Site",
    "attention_flow",
    "attention_for_text",
    "attention_modules",
    "attention_rollout",
    "attention_sites",
    "capture_attention",
    "display_tokens",
    "generate_with_attention",
    "head_importance",
    "head_masks",
    "head_statistics",
    "heads_to_prune",
    "maps_from_capture",
    "max_flow",
    "prune_heads",
    "pruning_curve",
    "residual_attention",
    "teacher_forced_attention",
    "view_data",
]
