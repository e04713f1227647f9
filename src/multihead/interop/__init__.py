"""Pretrained checkpoints in and out: Hugging Face BERT, GPT-2, Marian, Llama, Qwen2 and Mistral directories <-> our
models, and llama.cpp GGUF files in.

``load_hf`` reads a local directory (never code, never the network); ``save_hf`` writes one that
``transformers`` loads; ``load_gguf`` reads a ``.gguf`` file (model, tokenizer, chat template);
``load_pretrained`` takes any of them (or ``package:NAME``) as a starting point.
"""

from multihead.interop.files import is_hf_directory
from multihead.interop.gguf import LoadedGGUF, load_gguf
from multihead.interop.hf import SUPPORTED_MODEL_TYPES, LoadedHF, load_hf, save_hf
from multihead.interop.pretrained import (
    FINE_TUNING_FIELDS,
    PACKAGE_PREFIX,
    Pretrained,
    classifier_from_pretrained,
    encoder_of,
    load_pretrained,
    resolve_model_path,
)

__all__ = [
    "FINE_TUNING_FIELDS",
    "PACKAGE_PREFIX",
    "SUPPORTED_MODEL_TYPES",
    "LoadedGGUF",
    "LoadedHF",
    "Pretrained",
    "classifier_from_pretrained",
    "encoder_of",
    "is_hf_directory",
    "load_gguf",
    "load_hf",
    "load_pretrained",
    "resolve_model_path",
    "save_hf",
]
