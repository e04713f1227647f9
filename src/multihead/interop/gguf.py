"""llama.cpp's GGUF files into our ``DecoderLM``: metadata -> ``TransformerConfig``, tensors dequantized to floats,
the tokenizer and chat template from the metadata.

A GGUF file holds key/value metadata (the architecture's sizes under ``<arch>.*``, the tokenizer under
``tokenizer.*``) and named tensors, each stored as floats or in blocks of quantized values (Q8_0, Q4_0, Q4_1,
K-quants, ...). The file is read with the ``gguf`` package (``GGUFReader``, ``gguf.quants.dequantize``); nothing in
it is executed. Supported architectures: ``llama`` and ``mistral`` (llama.cpp stores their query and key rows
permuted for its interleaved rotary layout; undone here, back to the rotate-half layout) and ``qwen2`` (q/k/v
biases, rows as in Hugging Face).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from multihead.errors import CheckpointError, ConfigError, LimitError
from multihead.interop.gguf_tokenizer import tokenizer_from_gguf
from multihead.interop.weights import load_mapped
from multihead.models import DecoderLM, TransformerConfig
from multihead.tokenizers import Tokenizer

__all__ = ["GGUF_ARCHITECTURES", "GGUFFile", "LoadedGGUF", "config_from_gguf", "gguf_state_dict", "load_gguf",
           "read_gguf", "unpermute_rotary"]

GGUF_ARCHITECTURES = ("llama", "mistral", "qwen2")
_PERMUTED = ("llama", "mistral")  # architectures whose q/k rows llama.cpp permutes
_LAYER = {  # GGUF name in block N -> our name in decoder.layers.N
    "attn_norm": "attn_norm", "ffn_norm": "ff_norm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.out_proj", "ffn_gate": "feed_forward.gate",
    "ffn_up": "feed_forward.up", "ffn_down": "feed_forward.down",
}
_LARGE_ARRAY = 4096  # metadata arrays longer than this are left out of ``LoadedGGUF.metadata``, and the vocabulary:
_VOCABULARY_KEYS = tuple(f"tokenizer.ggml.{key}" for key in ("tokens", "merges", "token_type", "scores"))


@dataclass
class GGUFFile:
    """A GGUF file's metadata (every key -> its value) and tensors (name -> ``gguf`` ``ReaderTensor``)."""

    path: Path
    fields: dict[str, Any]
    tensors: dict[str, Any]

    @property
    def architecture(self) -> str:
        return str(self.fields.get("general.architecture"))


@dataclass
class LoadedGGUF:
    """What a GGUF file holds, as our objects.

    Attributes:
        model: the ``DecoderLM`` (eval mode), weights dequantized to ``dtype``.
        tokenizer: byte-level BPE with the file's special tokens (roles in ``tokenizer.special_tokens``) and chat
            template (``tokenizer.chat_template``).
        chat_template: the Jinja chat template (``tokenizer.chat_template``), or ``None``.
        generation_config: ``bos_token_id``, ``eos_token_id`` and ``pad_token_id`` (``None`` where absent).
        metadata: the file's metadata without the long arrays (the vocabulary and merges).
        tensor_types: tensor name -> storage type (``Q4_1``, ``Q8_0``, ``F32``, ...).
        path: the file.
    """

    model: DecoderLM
    tokenizer: Tokenizer
    chat_template: str | None
    generation_config: dict[str, int | None]
    metadata: dict[str, Any] = field(repr=False)
    tensor_types: dict[str, str] = field(repr=False)
    path: Path = Path()


def read_gguf(path: str | Path) -> GGUFFile:
    """Open ``path`` and read its metadata and tensor table (tensor data stays on disk, memory-mapped).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a GGUF file, a truncated or damaged one, or a tensor of an unknown type.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; expected a .gguf model file")
    gguf = _gguf_package()
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as error:  # the reader raises ValueError, IndexError, struct and numpy errors alike
        raise CheckpointError(f"{path}: not a readable GGUF file ({_reason(error)})") from error
    fields = {key: _value(value) for key, value in reader.fields.items()}
    tensors = {tensor.name: tensor for tensor in reader.tensors}
    size = path.stat().st_size
    for tensor in reader.tensors:
        expected = _stored_bytes(gguf, tensor)
        if tensor.data_offset + expected > size or tensor.data.nbytes != expected:
            raise CheckpointError(f"{path}: tensor {tensor.name} needs {expected:,} bytes at offset "
                                  f"{tensor.data_offset:,}, but the file has {size:,} bytes; it is truncated")
    return GGUFFile(path, fields, tensors)


def config_from_gguf(file: GGUFFile) -> TransformerConfig:
    """Our config for the sizes in ``file``'s metadata (``<arch>.block_count``, ``embedding_length``, ...).

    Raises:
        CheckpointError: an architecture other than ``llama``, ``mistral`` or ``qwen2``, missing sizes, or
            options we do not implement (rotary scaling, partial rotary embeddings, other head widths).
    """
    arch, origin, fields = file.architecture, str(file.path), file.fields
    if arch not in GGUF_ARCHITECTURES:
        raise CheckpointError(f"{origin}: GGUF architecture {arch!r} is not supported; expected one of "
                              f"{GGUF_ARCHITECTURES}")

    def size(key: str, default: int | None = None) -> int:
        value = fields.get(f"{arch}.{key}", default)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise CheckpointError(f"{origin}: {arch}.{key} is {value!r:.40}; expected a positive integer")
        return value

    d_model, n_heads = size("embedding_length"), size("attention.head_count")
    n_kv_heads = size("attention.head_count_kv", n_heads)
    if d_model % n_heads:
        raise CheckpointError(f"{origin}: {arch}.embedding_length {d_model} is not a multiple of "
                              f"{arch}.attention.head_count {n_heads}")
    head_dim = d_model // n_heads
    for key in ("rope.dimension_count", "attention.key_length", "attention.value_length"):
        if f"{arch}.{key}" in fields and size(key) != head_dim:
            raise CheckpointError(f"{origin}: {arch}.{key} = {size(key)} differs from the head width {head_dim}; "
                                  f"only rotary embeddings over whole heads of width embedding_length / head_count "
                                  f"are supported")
    scaling = fields.get(f"{arch}.rope.scaling.type", "none")
    if scaling not in ("none", "linear") or (scaling == "linear" and fields.get(f"{arch}.rope.scaling.factor", 1.0)
                                             != 1.0) or "rope_freqs.weight" in file.tensors:
        raise CheckpointError(f"{origin}: rotary scaling ({scaling}) is not supported; expected plain RoPE")
    context = size("context_length", 2048)
    window = fields.get(f"{arch}.attention.sliding_window")
    if isinstance(window, int) and 0 < window < context:
        context = window  # sliding-window attention agrees with full attention inside the window
    token_count = len(fields.get("tokenizer.ggml.tokens") or [])
    vocab_size = size("vocab_size", token_count or None)
    embedding = file.tensors.get("token_embd.weight")
    if embedding is not None and tuple(int(n) for n in embedding.shape) != (d_model, vocab_size):
        raise CheckpointError(f"{origin}: token_embd.weight has shape {tuple(int(n) for n in embedding.shape)} "
                              f"(GGUF order), but the metadata says ({d_model}, {vocab_size})")
    pad = fields.get("tokenizer.ggml.padding_token_id")
    try:
        return TransformerConfig(
            vocab_size=vocab_size, d_model=d_model, n_heads=n_heads,
            n_kv_heads=None if n_kv_heads == n_heads else n_kv_heads,
            d_ff=size("feed_forward_length"), n_layers=size("block_count"), activation="swiglu", norm="rms",
            norm_first=True, eps=float(fields.get(f"{arch}.attention.layer_norm_rms_epsilon", 1e-5)),
            positions="rope", rope_theta=float(fields.get(f"{arch}.rope.freq_base", 10000.0)), max_length=context,
            dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, bias=False,
            qkv_bias=True if arch == "qwen2" else None, tie_embeddings="output.weight" not in file.tensors,
            scale_embeddings=False, pad_id=pad if isinstance(pad, int) and 0 <= pad < vocab_size else None,
        )
    except (TypeError, ValueError) as error:  # sizes over the limits stay LimitErrors; the rest is a bad file
        raise (LimitError if isinstance(error, LimitError) else CheckpointError)(f"{origin}: {error}") from error


def load_gguf(
    path: str | Path, *, keep_quantized: bool = False, dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> LoadedGGUF:
    """Read a GGUF file into a ``DecoderLM`` with its tokenizer and chat template.

    Args:
        path: the ``.gguf`` file.
        keep_quantized: keep the linear layers' weights in their quantized blocks (through
            :mod:`multihead.quantize`) instead of dequantizing them.
        dtype, device: of the model's (dequantized) weights.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: a damaged or truncated file, an unsupported architecture or tensor type, or tensors
            whose names or shapes do not fit the metadata (one line naming them).
    """
    file = read_gguf(path)
    origin = str(file.path)
    config = config_from_gguf(file)
    tokenizer = tokenizer_from_gguf(file.fields, origin=origin)
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(f"{origin}: the tokenizer has {tokenizer.vocab_size} tokens, the model "
                              f"{config.vocab_size}; expected one vocabulary")
    model = _unfilled_model(config)
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    load_mapped(model, gguf_state_dict(file, config, shapes=shapes, dtype=torch.float32), origin=origin)
    if dtype != torch.float32:
        model = model.to(dtype=dtype)
    if keep_quantized:  # Q4_0/Q4_1 -> int4 (group 32) exactly, Q8_0 -> int8 (requantized): multihead.quantize
        from multihead.quantize import keep_quantized_linears

        keep_quantized_linears(model, _linear_blocks(file, config, model), origin=origin)
    ids = {f"{role}_token_id": tokenizer.token_to_id(token) for role, token in tokenizer.special_tokens.items()
           if role in ("bos", "eos", "pad")}
    generation = {key: ids.get(key) for key in ("bos_token_id", "eos_token_id", "pad_token_id")}
    metadata = {key: value for key, value in file.fields.items()
                if key not in _VOCABULARY_KEYS and not (isinstance(value, list) and len(value) > _LARGE_ARRAY)}
    types = {name: tensor.tensor_type.name for name, tensor in file.tensors.items()}
    return LoadedGGUF(model=model.to(device=device).eval(), tokenizer=tokenizer, chat_template=tokenizer.chat_template,
                      generation_config=generation, metadata=metadata, tensor_types=types, path=file.path)


def gguf_state_dict(
    file: GGUFFile, config: TransformerConfig, *, shapes: dict[str, tuple[int, ...]], dtype: torch.dtype
) -> dict[str, Tensor]:
    """Our state dict (names of ``DecoderLM``) from ``file``'s tensors, dequantized; every tensor must be used and
    have the shape in ``shapes`` (our name -> shape) that the config gives."""
    origin, names = str(file.path), dict(_our_names(config))
    unexpected = sorted(set(file.tensors) - set(names))
    missing = sorted(set(names) - set(file.tensors))
    if unexpected or missing:
        raise CheckpointError(f"{origin}: the tensors do not fit a {config.n_layers}-layer {file.architecture}: "
                              f"missing {missing[:8]}, unexpected {unexpected[:8]}")
    mapped: dict[str, Tensor] = {}
    for gguf_name, our_name in names.items():
        tensor = file.tensors[gguf_name]
        shape = tuple(reversed([int(n) for n in tensor.shape]))  # GGUF lists the fastest-moving dimension first
        if shape != shapes[our_name]:
            raise CheckpointError(f"{origin}: tensor {gguf_name} has shape {shape}; the metadata's sizes need "
                                  f"{shapes[our_name]}")
        values = np.require(_dequantized(tensor, origin), requirements=["C", "W"])  # a copy only if read-only
        weight = torch.from_numpy(values).reshape(shape)  # (out, in)
        if file.architecture in _PERMUTED and gguf_name.split(".")[-2] in ("attn_q", "attn_k"):
            heads = config.n_heads if ".attn_q." in gguf_name else config.n_kv_heads or config.n_heads
            weight = unpermute_rotary(weight, heads)
        mapped[our_name] = weight.to(dtype)
    return mapped


def _unfilled_model(config: TransformerConfig) -> DecoderLM:
    """A ``DecoderLM`` whose weights are allocated but not initialised (they are all overwritten next; random
    initialisation of a 100M-parameter model costs seconds)."""
    with torch.device("meta"):
        model = DecoderLM(config)
    model = model.to_empty(device="cpu")
    if config.tie_embeddings:  # to_empty gives each module its own tensor: share the embedding again
        model.lm_head.weight = model.decoder.embeddings.tokens.weight
    return model


def _our_names(config: TransformerConfig) -> list[tuple[str, str]]:
    """(GGUF name, our name) of every tensor a file for ``config`` holds."""
    names = [("token_embd.weight", "decoder.embeddings.tokens.weight"),
             ("output_norm.weight", "decoder.final_norm.weight")]
    if not config.tie_embeddings:
        names.append(("output.weight", "lm_head.weight"))
    for index in range(config.n_layers):
        for gguf_name, our_name in _LAYER.items():
            names.append((f"blk.{index}.{gguf_name}.weight", f"decoder.layers.{index}.{our_name}.weight"))
            if config.uses_qkv_bias and gguf_name in ("attn_q", "attn_k", "attn_v"):
                names.append((f"blk.{index}.{gguf_name}.bias", f"decoder.layers.{index}.{our_name}.bias"))
    return names


def _linear_blocks(file: GGUFFile, config: TransformerConfig, model: DecoderLM) -> dict[str, tuple[str, Tensor]]:
    """Our linear layer name -> (GGUF storage type, its raw rows ``(out, bytes)`` in our row order); a tied output
    layer takes the token embedding's rows."""
    pairs = [*_our_names(config), *([("token_embd.weight", "lm_head.weight")] if config.tie_embeddings else [])]
    blocks: dict[str, tuple[str, Tensor]] = {}
    for gguf_name, our_name in pairs:
        layer = our_name.removesuffix(".weight")
        if not our_name.endswith(".weight") or not isinstance(model.get_submodule(layer), torch.nn.Linear):
            continue
        tensor = file.tensors[gguf_name]
        raw = torch.from_numpy(np.array(tensor.data))  # (out, bytes), or (out, in) floats
        if file.architecture in _PERMUTED and gguf_name.split(".")[-2] in ("attn_q", "attn_k"):
            heads = config.n_heads if ".attn_q." in gguf_name else config.n_kv_heads or config.n_heads
            raw = unpermute_rotary(raw, heads)
        blocks[layer] = (tensor.tensor_type.name, raw)
    return blocks


def unpermute_rotary(weight: Tensor, n_heads: int) -> Tensor:
    """Undo llama.cpp's permutation of query or key rows ``(n_heads * Dh, ...)``: within each head it stores the
    rotate-half pairs ``(j, j + Dh/2)`` as neighbours ``(2j, 2j + 1)``; this puts them back in two halves."""
    rows = weight.shape[0]
    per_head = weight.reshape(n_heads, rows // n_heads // 2, 2, *weight.shape[1:])  # (H, Dh/2, 2, ...)
    return per_head.transpose(1, 2).reshape(weight.shape)  # (H * Dh, ...): halves of each head


def _dequantized(tensor: Any, origin: str) -> np.ndarray:
    """The values of a ``ReaderTensor`` as float32 (or its own float type), shaped ``(rows, columns)``."""
    gguf = _gguf_package()
    kind = tensor.tensor_type
    try:
        return gguf.quants.dequantize(tensor.data, kind)
    except NotImplementedError as error:
        raise CheckpointError(f"{origin}: tensor {tensor.name} is stored as {kind.name}, which the gguf package "
                              f"cannot dequantize; expected F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 or a "
                              f"K-quant") from error


def _stored_bytes(gguf: Any, tensor: Any) -> int:
    """Bytes a tensor of its type and element count takes in the file."""
    block, type_size = gguf.GGML_QUANT_SIZES[tensor.tensor_type]
    return int(tensor.n_elements) // block * type_size


def _value(value: Any) -> Any:
    """A metadata field as a Python value (scalar, string or list)."""
    return value.contents()


def _reason(error: Exception) -> str:
    text = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
    if "GGMLQuantizationType" in text:
        return f"a tensor has an unknown storage type: {text}"
    if "magic" in text.lower():
        return "it does not start with the GGUF magic bytes; expected a llama.cpp .gguf file"
    return f"{text}; the file may be truncated or damaged"


def _gguf_package() -> Any:
    try:
        import gguf
    except ImportError as error:
        raise ConfigError("reading GGUF files needs the gguf package: pip install gguf") from error
    return gguf

