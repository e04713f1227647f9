"""Drop-in twins of ``torch.nn``'s attention and Transformer modules.

Change ``from torch.nn import TransformerEncoderLayer`` to ``from multihead.compat import
TransformerEncoderLayer``: same signatures, attribute names and ``state_dict`` keys, so weights load
both ways. Masks keep PyTorch's conventions (bool True = ignore, float added). The one intended
difference: a query row that may attend no key gives zeros, not NaN.
"""

from multihead.compat.attention import MultiheadAttention
from multihead.compat.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = [
    "MultiheadAttention",
    "Transformer",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "TransformerEncoder",
    "TransformerEncoderLayer",
]
