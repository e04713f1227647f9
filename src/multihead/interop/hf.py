"""``load_hf`` and ``save_hf``: Hugging Face model directories into our models and back.

Supported: BERT (``BertModel`` -> ``Encoder``, ``BertForSequenceClassification`` -> ``SequenceClassifier``),
GPT-2 (``GPT2LMHeadModel`` -> ``DecoderLM``), Marian (``MarianMTModel`` -> ``EncoderDecoder``) and Llama, Qwen2 and
Mistral (``LlamaForCausalLM``, ``Qwen2ForCausalLM``, ``MistralForCausalLM`` -> ``DecoderLM`` with rotary positions).
Loading reads ``config.json`` and the weights (safetensors, or a tensors-only ``pytorch_model.bin``)
from a local directory; it never imports ``transformers``, runs code from the directory or touches
the network. Saving writes ``config.json``, ``model.safetensors`` and the tokenizer files that
``transformers`` reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from multihead.atomic import atomic_directory
from multihead.errors import CheckpointError, ConfigError
from multihead.interop.bert import export_bert, load_bert
from multihead.interop.files import read_hf_config, read_hf_weights, read_json, write_hf_weights
from multihead.interop.gpt2 import export_gpt2, load_gpt2
from multihead.interop.llama import export_llama, hf_model_type, load_llama
from multihead.interop.marian import export_marian, load_marian
from multihead.models import DecoderLM, Encoder, EncoderDecoder, SequenceClassifier
from multihead.tokenizers import Tokenizer

__all__ = ["SUPPORTED_MODEL_TYPES", "LoadedHF", "load_hf", "save_hf"]

_LOADERS: dict[str, Callable[..., tuple[nn.Module, list[str] | None]]] = {
    "bert": load_bert,
    "gpt2": load_gpt2,
    "marian": load_marian,
    "llama": load_llama,
    "qwen2": load_llama,
    "mistral": load_llama,
}
SUPPORTED_MODEL_TYPES = tuple(_LOADERS)
_TOKEN_ROLES = {  # tokenizer_config.json key -> names our Tokenizer knows for that role
    "pad_token": ("[PAD]", "<pad>"),
    "unk_token": ("[UNK]", "<unk>"),
    "cls_token": ("[CLS]",),
    "sep_token": ("[SEP]",),
    "mask_token": ("[MASK]", "<mask>"),
    "bos_token": ("[BOS]", "<s>", "<|endoftext|>"),
    "eos_token": ("[EOS]", "</s>", "<|endoftext|>"),
}


@dataclass
class LoadedHF:
    """A Hugging Face directory as our objects.

    Attributes:
        model: ``Encoder``, ``SequenceClassifier``, ``DecoderLM`` or ``EncoderDecoder``, in eval mode.
        tokenizer: from ``tokenizer.json`` or a BERT ``vocab.txt``; ``None`` when the directory has
            neither (e.g. Marian's SentencePiece files).
        hf_config: the ``config.json`` values, for ``save_hf(..., hf_config=...)`` to carry over.
        labels: class names in index order (classifiers only).
        generation_config: ``generation_config.json`` values when present.
    """

    model: nn.Module
    tokenizer: Tokenizer | None
    hf_config: dict[str, Any]
    labels: list[str] | None = None
    generation_config: dict[str, Any] | None = None


def load_hf(
    directory: str | Path, *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> LoadedHF:
    """Read a local Hugging Face model directory into our model and tokenizer.

    Raises:
        FileNotFoundError: no directory, ``config.json`` or weights.
        ValueError: an unsupported ``model_type``, architecture or option, or weights with missing or
            unexpected tensors (all of them listed).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: not a directory; expected a Hugging Face model directory")
    hf_config = read_hf_config(directory)
    model_type = hf_config["model_type"]
    if model_type not in _LOADERS:
        raise CheckpointError(f"{directory / 'config.json'}: model_type {model_type!r} is not supported; "
                              f"expected one of {SUPPORTED_MODEL_TYPES}")
    model, labels = _LOADERS[model_type](hf_config, read_hf_weights(directory), origin=str(directory))
    tokenizer = None
    if (directory / "tokenizer.json").is_file() or (directory / "vocab.txt").is_file():
        tokenizer = Tokenizer.load(directory)
    generation_path = directory / "generation_config.json"
    generation = read_json(generation_path) if generation_path.is_file() else None
    return LoadedHF(model=model.to(device=device, dtype=dtype).eval(), tokenizer=tokenizer, hf_config=hf_config,
                    labels=labels, generation_config=generation)


def save_hf(
    model: nn.Module,
    directory: str | Path,
    *,
    tokenizer: Tokenizer | None = None,
    hf_config: Mapping[str, Any] | None = None,
    labels: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``model`` as a Hugging Face directory that ``transformers`` loads (atomically).

    Args:
        model: an ``Encoder`` (BERT), ``SequenceClassifier`` (BERT, needs ``config.pooler`` and ``cls``
            pooling), ``DecoderLM`` (GPT-2 with learned positions; Llama or Qwen2 with rotary positions, RMSNorm
            and SwiGLU, with a ``generation_config.json``) or ``EncoderDecoder`` (Marian).
        directory: replaced as a whole when it is absent, empty or a model directory.
        tokenizer: also written, as ``tokenizer.json`` with a ``tokenizer_config.json``.
        hf_config: ``config.json`` values to carry over (e.g. ``LoadedHF.hf_config``: special token ids,
            label names); ours win where both set a key; ignored unless its ``model_type`` matches.
        labels: class names of a ``SequenceClassifier`` (``id2label``).
        overwrite: also write into a ``directory`` that holds other files, replacing only the model's files
            (see :func:`multihead.atomic.atomic_directory`).

    Raises:
        ValueError: a model that the architecture cannot hold; the message lists every reason.
    """
    model_type = _model_type_for(model)
    base = dict(hf_config or {}) if (hf_config or {}).get("model_type") == model_type else {}
    values: dict[str, Any]
    tensors: dict[str, Tensor]
    if model_type == "bert":
        values, tensors = export_bert(model, base=base, labels=labels)
    elif model_type == "gpt2":
        values, tensors = export_gpt2(model, base=base)
    elif model_type in ("llama", "qwen2"):
        values, tensors = export_llama(model, base=base, special_ids=_special_ids(tokenizer))
    else:
        values, tensors = export_marian(model, base=base)
    values = {**{k: v for k, v in base.items() if k not in ("torch_dtype", "dtype", "transformers_version")}, **values}
    values["dtype"] = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    directory = Path(directory)
    with atomic_directory(directory, overwrite=overwrite) as staging:
        (staging / "config.json").write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
        write_hf_weights(staging, tensors)
        if tokenizer is not None:
            write_tokenizer_files(staging, tokenizer, max_length=model.config.max_length)
        if model_type in ("llama", "qwen2"):  # what transformers' generate() reads its token ids from
            generation = {key: values[key] for key in ("bos_token_id", "eos_token_id", "pad_token_id")}
            (staging / "generation_config.json").write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n")
    return directory


def _special_ids(tokenizer: Tokenizer | None) -> dict[str, int | None]:
    """The BOS, EOS and padding ids of ``tokenizer`` (none without one)."""
    if tokenizer is None:
        return {}
    return {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "pad": tokenizer.pad_id}


def _model_type_for(model: nn.Module) -> str:
    """The Hugging Face ``model_type`` that holds ``model``."""
    if isinstance(model, SequenceClassifier | Encoder):
        return "bert"
    if isinstance(model, DecoderLM):
        return hf_model_type(model.config) if model.config.positions == "rope" else "gpt2"
    if isinstance(model, EncoderDecoder):
        return "marian"
    raise ConfigError(f"cannot save a {type(model).__name__} as a Hugging Face model; expected an Encoder, "
                      f"SequenceClassifier, DecoderLM or EncoderDecoder")


def write_tokenizer_files(directory: Path, tokenizer: Tokenizer, *, max_length: int) -> None:
    """``tokenizer.json`` and a ``tokenizer_config.json`` that names the special tokens (and holds the chat template)
    for ``transformers``."""
    tokenizer.save(directory / "tokenizer.json")
    config: dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": max_length}
    for key, names in _TOKEN_ROLES.items():
        present = next((name for name in names if tokenizer.token_to_id(name) is not None), None)
        if present is not None:
            config[key] = present
    config.update(tokenizer.config_values())  # roles the tokenizer was given, and its chat template
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
