"""Transformer models: encoders, decoders, encoder-decoders and task heads."""

from multihead.models.config import PRESETS, TransformerConfig
from multihead.models.decoder import Decoder, DecoderLM
from multihead.models.embedding import Embeddings
from multihead.models.encoder import Encoder
from multihead.models.heads import SequenceClassifier, SpanExtractor, TokenClassifier, best_spans, pool
from multihead.models.sentence_scorer import SentenceScorer, top_k_in_order
from multihead.models.seq2seq import EncoderDecoder

__all__ = [
    "PRESETS",
    "Decoder",
    "DecoderLM",
    "Embeddings",
    "Encoder",
    "EncoderDecoder",
    "SentenceScorer",
    "SequenceClassifier",
    "SpanExtractor",
    "TokenClassifier",
    "TransformerConfig",
    "best_spans",
    "pool",
    "top_k_in_order",
]
