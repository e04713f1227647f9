"""``TransformerConfig``: one frozen, validated description of every multihead model, with presets."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from multihead.errors import ConfigError
from multihead.limits import MAX_HEADS, MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB, MAX_WIDTH, check_bound, check_parameters
from multihead.models.config_dict import DictConfig

__all__ = ["PRESETS", "TransformerConfig"]

PositionKind = Literal["sinusoidal", "learned", "rope", "alibi", "none"]

_BOUNDS: dict[str, int] = {
    "vocab_size": MAX_VOCAB, "target_vocab_size": MAX_VOCAB, "d_model": MAX_WIDTH, "d_ff": MAX_WIDTH,
    "n_heads": MAX_HEADS, "n_kv_heads": MAX_HEADS, "n_layers": MAX_LAYERS, "n_decoder_layers": MAX_LAYERS,
    "max_length": MAX_POSITIONS,
}
_LATER_FIELDS: dict[str, Any] = {"rope_theta": 10000.0, "qkv_bias": None, "copy_attention": False,
                                  "copy_previous_token": False}
"""Fields added after model directories were first saved: left out of ``to_dict`` at their defaults."""
_CHOICES: dict[str, tuple[str, ...]] = {
    "activation": ("relu", "gelu", "gelu_tanh", "silu", "swiglu"),
    "norm": ("layer", "rms"),
    "positions": ("sinusoidal", "learned", "rope", "alibi", "none"),
    "sinusoid_layout": ("interleaved", "halves"),
}


@dataclass(frozen=True, kw_only=True)
class TransformerConfig(DictConfig):
    """Sizes and choices of a Transformer; ``EncoderDecoder`` uses both layer counts.

    Attributes:
        vocab_size: tokens of the (source) vocabulary.
        target_vocab_size: tokens of the target vocabulary of an ``EncoderDecoder``; ``None`` shares
            one vocabulary (and one embedding) between source and target.
        d_model, n_heads, n_kv_heads, d_ff: widths and heads (``d_ff`` default ``4 * d_model``).
        n_layers: encoder layers (or decoder layers of a ``DecoderLM``).
        n_decoder_layers: decoder layers of an ``EncoderDecoder`` (default ``n_layers``).
        positions: ``sinusoidal``, ``learned``, ``rope``, ``alibi`` or ``none``.
        rope_theta: the rotary base (``rope`` only): pair ``j`` of a head turns by ``position * rope_theta^(-2j/Dh)``
            (10,000 in Su et al. and Llama 2; 100,000 in SmolLM2; 1,000,000 in Qwen2).
        max_length: longest sequence (learned positions and cache sizes).
        dropout, attention_dropout: residual and attention-weight dropout.
        activation_dropout: dropout on the feed-forward hidden units; ``None`` uses ``dropout``.
        norm_first: pre-norm (True) or post-norm; norm: ``layer`` or ``rms``.
        tie_embeddings: the output projection shares the token embedding matrix.
        scale_embeddings: Vaswani et al.'s convention: token embeddings start at std ``d_model ** -0.5`` and
            are multiplied by ``sqrt(d_model)``, so they are as large as sinusoidal encodings (values in
            [-1, 1]). ``None`` (default) turns it on exactly for sinusoidal positions; with small (0.02)
            token embeddings the positions would drown them.
        qkv_bias: biases on the query, key and value projections; ``None`` (default) follows ``bias``. Qwen2 has
            them (``bias=False, qkv_bias=True``).
        pad_id: padding token; masks are derived from it when none is given.
        activation: ``relu``, ``gelu``, ``gelu_tanh`` (GPT-2's approximation), ``silu`` or ``swiglu``.
        sinusoid_layout: ``interleaved`` (sin, cos pairs; Vaswani et al.) or ``halves`` (every sine, then
            every cosine; Marian and fairseq).
        embedding_norm: a norm right after token and position embeddings are summed (BERT).
        output_bias: a bias on the output projection of a ``DecoderLM`` or ``EncoderDecoder`` (Marian's
            ``final_logits_bias``).
        pooler: ``SequenceClassifier`` passes the pooled vector through a dense layer and tanh before the
            classifier (BERT's pooler).
        pruned_heads: heads removed from attention modules, by their original index, e.g.
            ``{"encoder.0.self_attn": (1, 3), "decoder.2.cross_attn": (0,)}`` (keys ``encoder.L.self_attn``,
            ``decoder.L.self_attn``, ``decoder.L.cross_attn``); applied when a model is built, so a pruned
            model directory loads into the smaller shapes. ``None``: no head pruned.
        copy_attention: an ``EncoderDecoder`` mixes its output distribution with a copy distribution over the
            source tokens (a pointer-generator, :mod:`multihead.models.copy`); needs a shared vocabulary.
        copy_previous_token: the copy attention also matches the decoder's input token against the source
            token before each position, so that it finds the next position of a run it is copying by content
            (``CopyGenerator(match_previous=True)``); needs ``copy_attention``.
    """

    vocab_size: int
    target_vocab_size: int | None = None
    d_model: int = 256
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_ff: int | None = None
    n_layers: int = 4
    n_decoder_layers: int | None = None
    activation: str = "gelu"
    norm: str = "layer"
    norm_first: bool = True
    eps: float = 1e-5
    positions: str = "sinusoidal"
    max_length: int = 512
    rope_theta: float = 10000.0
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float | None = None
    bias: bool = True
    qkv_bias: bool | None = None
    tie_embeddings: bool = True
    scale_embeddings: bool | None = None
    pad_id: int | None = 0
    sinusoid_layout: str = "interleaved"
    embedding_norm: bool = False
    output_bias: bool = False
    pooler: bool = False
    pruned_heads: Mapping[str, Sequence[int]] | None = None
    copy_attention: bool = False
    copy_previous_token: bool = False

    def __post_init__(self) -> None:
        positive = ("vocab_size", "d_model", "n_heads", "n_layers", "max_length")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"TransformerConfig.{name} must be a positive integer, got {value!r:.80}")
        for name in ("target_vocab_size", "n_kv_heads", "d_ff", "n_decoder_layers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise ConfigError(f"TransformerConfig.{name} must be a positive integer or None, got {value!r:.80}")
        for name, bound in _BOUNDS.items():
            if getattr(self, name) is not None:
                check_bound(f"TransformerConfig.{name}", getattr(self, name), bound)
        check_parameters(self.estimated_parameters, where="TransformerConfig")
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"TransformerConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.n_kv_heads is not None and self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"TransformerConfig.n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})"
            )
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"TransformerConfig.{name} must be one of {choices}, got {getattr(self, name)!r:.80}")
        if self.positions == "rope" and self.head_dim % 2:
            raise ConfigError(f"rope needs an even head width, got d_model/n_heads = {self.head_dim}")
        if self.positions == "sinusoidal" and self.d_model % 2:
            raise ConfigError(f"sinusoidal positions need an even d_model, got {self.d_model}")
        for name in ("dropout", "attention_dropout", "activation_dropout"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int | float) and 0.0 <= value < 1.0):
                raise ConfigError(f"TransformerConfig.{name} must be in [0, 1), got {value!r:.80}")
        if not isinstance(self.eps, int | float) or not math.isfinite(self.eps) or self.eps <= 0:
            raise ConfigError(f"TransformerConfig.eps must be a positive finite number, got {self.eps!r:.80}")
        if isinstance(self.rope_theta, bool) or not isinstance(self.rope_theta, int | float) \
                or not math.isfinite(self.rope_theta) or self.rope_theta <= 1:
            raise ConfigError(f"TransformerConfig.rope_theta must be a finite number > 1, got {self.rope_theta!r:.80}")
        if not isinstance(self.copy_attention, bool):
            raise ConfigError(f"TransformerConfig.copy_attention must be true or false, "
                              f"got {self.copy_attention!r:.60}")
        if not isinstance(self.copy_previous_token, bool):
            raise ConfigError(f"TransformerConfig.copy_previous_token must be true or false, "
                              f"got {self.copy_previous_token!r:.60}")
        if self.copy_previous_token and not self.copy_attention:
            raise ConfigError("TransformerConfig.copy_previous_token shapes the copy attention: it needs "
                              "copy_attention: true")
        if self.copy_attention and self.target_vocab_size is not None:
            raise ConfigError("TransformerConfig.copy_attention copies source tokens into the output: it needs one "
                              "vocabulary for both sides (target_vocab_size None, model.shared_vocabulary true)")
        if self.qkv_bias is not None and not isinstance(self.qkv_bias, bool):
            raise ConfigError(f"TransformerConfig.qkv_bias must be true, false or None, got {self.qkv_bias!r:.80}")
        if self.pad_id is not None and not 0 <= self.pad_id < self.vocab_size:
            raise ConfigError(
                f"TransformerConfig.pad_id {self.pad_id} is outside the vocabulary (0..{self.vocab_size - 1})"
            )
        object.__setattr__(self, "pruned_heads", self._checked_pruned_heads())

    def _checked_pruned_heads(self) -> dict[str, tuple[int, ...]] | None:
        """``pruned_heads`` validated and normalised: keys sorted, heads sorted tuples; ``None`` if empty."""
        if not self.pruned_heads:
            return None
        if not isinstance(self.pruned_heads, Mapping):
            raise ConfigError(f"TransformerConfig.pruned_heads must be a mapping of module -> heads, "
                              f"got {self.pruned_heads!r:.80}")
        if self.positions == "alibi":
            raise ConfigError("TransformerConfig.pruned_heads is not supported with ALiBi positions")
        layers = max(self.n_layers, self.decoder_layers)
        normalised: dict[str, tuple[int, ...]] = {}
        for key in sorted(self.pruned_heads):
            match = re.fullmatch(r"(encoder\.(\d+)\.self_attn|decoder\.(\d+)\.(self|cross)_attn)", str(key))
            if match is None or int(match.group(2) or match.group(3)) >= layers:
                raise ConfigError(f"TransformerConfig.pruned_heads key {key!r:.80} must be encoder.L.self_attn, "
                                  f"decoder.L.self_attn or decoder.L.cross_attn with L < {layers}")
            heads = self.pruned_heads[key]
            if isinstance(heads, str | int) or not all(isinstance(h, int) and 0 <= h < self.n_heads for h in heads):
                raise ConfigError(f"TransformerConfig.pruned_heads[{key!r}] must list heads in 0..{self.n_heads - 1}, "
                                  f"got {heads!r:.80}")
            if heads:
                normalised[key] = tuple(sorted(set(heads)))
        return normalised or None

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; ``rope_theta`` and ``qkv_bias`` only when they differ from their defaults, so the
        ``config.json`` of every model that does not use them stays as it was before they existed."""
        values = super().to_dict()
        for name, default in _LATER_FIELDS.items():
            if values[name] == default:
                del values[name]
        return values

    @property
    def uses_qkv_bias(self) -> bool:
        """Whether the query, key and value projections have biases (``qkv_bias``, else ``bias``)."""
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def scales_embeddings(self) -> bool:
        """Whether token embeddings follow Vaswani et al.'s scaling (see ``scale_embeddings``)."""
        return self.positions == "sinusoidal" if self.scale_embeddings is None else self.scale_embeddings

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def estimated_parameters(self) -> int:
        """Parameters of the largest model this config builds (an ``EncoderDecoder`` when ``n_decoder_layers`` is
        set), counted from the sizes alone before anything is allocated; within a few percent of the true count."""
        d, heads = self.d_model, self.n_heads
        kv_width = (self.n_kv_heads or heads) * (d // heads)
        attention = 2 * d * d + 2 * d * kv_width + 2 * d + 2 * kv_width
        feed_forward = (3 if self.activation == "swiglu" else 2) * d * self.feed_forward_width
        layer = attention + feed_forward + 6 * d
        decoder = 0 if self.n_decoder_layers is None else self.n_decoder_layers * (layer + attention)
        table = d * self.max_length if self.positions == "learned" else 0  # the others compute positions on the fly
        outputs = (0 if self.tie_embeddings else self.output_vocab_size * d) + (self.target_vocab_size or 0) * d
        return self.vocab_size * d + table + self.n_layers * layer + decoder + outputs

    @property
    def feed_forward_width(self) -> int:
        return self.d_ff or 4 * self.d_model

    @property
    def decoder_layers(self) -> int:
        return self.n_decoder_layers or self.n_layers

    @property
    def output_vocab_size(self) -> int:
        return self.target_vocab_size or self.vocab_size

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> TransformerConfig:
        """A named size (``tiny``, ``small``, ``base``) with any field overridden."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r:.80}; choose one of {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})

    def replace(self, **changes: Any) -> TransformerConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> TransformerConfig:
        try:
            values = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from error
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object of config fields, got {type(values).__name__}")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{path}: {error}") from error


PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"vocab_size": 1000, "d_model": 64, "n_heads": 4, "n_layers": 2, "d_ff": 256, "max_length": 256},
    "small": {"vocab_size": 8000, "d_model": 256, "n_heads": 4, "n_layers": 4, "d_ff": 1024, "max_length": 512},
    "base": {"vocab_size": 32000, "d_model": 512, "n_heads": 8, "n_layers": 6, "d_ff": 2048, "max_length": 512},
}
