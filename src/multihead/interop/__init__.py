"""Hugging Face checkpoints in and out: BERT, GPT-2 and Marian directories <-> our models.

``load_hf`` reads a local directory (never code, never the network); ``save_hf`` writes one that
``transformers`` loads; ``load_pretrained`` takes either format as a starting point for fine-tuning.
"""

from multihead.interop.files import is_hf_directory
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
    "LoadedHF",
    "Pretrained",
    "classifier_from_pretrained",
    "encoder_of",
    "is_hf_directory",
    "load_hf",
    "load_pretrained",
    "resolve_model_path",
    "save_hf",
]
