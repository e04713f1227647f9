"""See the heads: capture attention, pictures, head statistics, an HTML view, rollout and flow.

```python
from multihead.inspect import Site, capture_attention
with capture_attention(model, layers=[0]) as captured:
    model(ids)
weights = captured.weights(Site("encoder", 0, "self"))  # (B, H, T, T)
```
"""

from multihead.inspect.capture import AttentionCapture, Site, attention_sites, capture_attention
from multihead.inspect.decoding import DecodedAttention, generate_with_attention, teacher_forced_attention
from multihead.inspect.maps import AttentionMaps, maps_from_capture

__all__ = [
    "AttentionCapture",
    "AttentionMaps",
    "DecodedAttention",
    "Site",
    "attention_sites",
    "capture_attention",
    "generate_with_attention",
    "maps_from_capture",
    "teacher_forced_attention",
]
