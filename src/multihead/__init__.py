"""multihead: Transformers built around one multi-head attention module."""

from multihead import masks
from multihead.attention import MultiHeadAttention
from multihead.cache import DecoderCache, KVCache
from multihead.functional import scaled_dot_product
from multihead.layers import DecoderLayer, EncoderLayer, FeedForward
from multihead.models import (
    Decoder,
    DecoderLM,
    Encoder,
    EncoderDecoder,
    SequenceClassifier,
    SpanExtractor,
    TokenClassifier,
    TransformerConfig,
)
from multihead.positions import ALiBi, LearnedPositions, RotaryEmbedding, SinusoidalPositions

__version__ = "0.1.0"

__all__ = [
    "ALiBi",
    "Decoder",
    "DecoderCache",
    "DecoderLM",
    "DecoderLayer",
    "Encoder",
    "EncoderDecoder",
    "EncoderLayer",
    "FeedForward",
    "KVCache",
    "LearnedPositions",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "SequenceClassifier",
    "SinusoidalPositions",
    "SpanExtractor",
    "TokenClassifier",
    "TransformerConfig",
    "masks",
    "scaled_dot_product",
]
