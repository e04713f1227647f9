"""Which model families an experiment's ``model.architecture`` may name, and the config class of each.

The Transformer is the default. A baseline (TextCNN, BiLSTM, recurrent encoder-decoder, LSTM language model)
adds its frozen config dataclass here; the class must have ``vocab_size`` and ``pad_id`` fields (the tokenizer
fills them), ``to_dict()`` and ``from_dict(values)``. The model class built from it takes the config as its
first argument, keeps it as ``model.config``, and sets ``config_class`` so model directories rebuild it.
"""

from __future__ import annotations

from typing import Any

from multihead.errors import ConfigError
from multihead.models.config import TransformerConfig
from multihead.models.rnn_classifier import BiLSTMConfig
from multihead.models.rnn_lm import LSTMLMConfig
from multihead.models.rnn_seq2seq import RNNSeq2SeqConfig
from multihead.models.textcnn import TextCNNConfig

__all__ = ["ARCHITECTURES", "config_class_of"]

ARCHITECTURES: dict[str, type[Any]] = {"transformer": TransformerConfig}
ARCHITECTURES["textcnn"] = TextCNNConfig
ARCHITECTURES["bilstm"] = BiLSTMConfig
ARCHITECTURES["rnn-attention"] = RNNSeq2SeqConfig
ARCHITECTURES["lstm-lm"] = LSTMLMConfig
"""``model.architecture`` name -> config dataclass."""


def config_class_of(architecture: str) -> type[Any]:
    """The config class for ``architecture``; a ``ValueError`` names the known ones otherwise."""
    try:
        return ARCHITECTURES[architecture]
    except KeyError:
        raise ConfigError(f"model.architecture must be one of {sorted(ARCHITECTURES)}, got "
                          f"{architecture!r:.80}") from None
