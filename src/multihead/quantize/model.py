"""``quantize_model``: swap a model's ``nn.Linear`` layers for ``QuantizedLinear``; the record a model directory keeps
of it, and rebuilding the quantized layers from that record when the directory is loaded.

The record, ``config.json``'s ``quantization`` section::

    {"method": "weight_only", "format_version": 1, "bits": 4, "group_size": 32,
     "modules": {"int4_g32": ["decoder.layers.0.self_attn.q_proj", ...], "int8": ["lm_head"]}}

``bits`` and ``group_size`` name the scheme most layers use; ``modules`` lists every quantized layer by scheme.
``"activations": "dynamic"`` (absent otherwise) says the int8 layers quantize their inputs per call too
(``QuantizedLinear(backend="dynamic")``); loading the directory restores it.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterable
from typing import Any

from torch import nn

from multihead.errors import CheckpointError, ConfigError
from multihead.quantize.formats import GROUP_SIZES
from multihead.quantize.linear import BACKENDS, Backend, QuantizedLinear

__all__ = [
    "FORMAT_VERSION",
    "OUTPUT_LAYERS",
    "apply_quantization_record",
    "quantization_record",
    "quantize_model",
    "replace_module",
    "set_backend",
]

FORMAT_VERSION = 1
METHOD = "weight_only"
OUTPUT_LAYERS = ("lm_head",)
"""Names of output layers (the last component of a module's name): they take ``head_bits``. On SmolLM2-135M an
int4 output layer raised tinyshakespeare perplexity by 5.5%, an int8 one by 0.01% (``docs/results/llm.md``)."""
MAX_MODULES = 100_000
ACTIVATIONS = ("none", "dynamic")


def quantize_model(
    model: nn.Module,
    *,
    bits: int = 8,
    group_size: int | None = None,
    skip: Iterable[str] = (),
    head_bits: int | None = 8,
    backend: Backend = "auto",
) -> nn.Module:
    """Quantize the weights of ``model``'s ``nn.Linear`` layers in place (weight-only); returns ``model``.

    Embeddings stay in floating point (a lookup reads only the rows it needs). A tied output layer gets its own
    quantized copy of the shared matrix, so the embedding keeps its exact values.

    Args:
        bits: 8 (int8 per output channel) or 4 (int4 in groups of ``group_size`` input features).
        group_size: int4 only, default 32; a layer whose input width it does not divide is stored as int8.
        skip: module names or ``fnmatch`` patterns (``"lm_head"``, ``"*.self_attn.*"``) left in floating point.
        head_bits: bits of the output layer (``lm_head``): 8 by default, also under ``bits=4`` (measured: int4 there
            costs far more accuracy than anywhere else); ``None`` follows ``bits``.
        backend: see :class:`QuantizedLinear`.

    Raises:
        ConfigError: bad ``bits``, ``group_size``, ``head_bits`` or ``backend``.
    """
    if bits not in (4, 8):
        raise ConfigError(f"bits must be 8 or 4, got {bits!r}")
    if bits == 8 and group_size is not None:
        raise ConfigError(f"group_size applies to int4 only (int8 is per output channel), got {group_size!r}")
    group = 32 if group_size is None else group_size
    if bits == 4 and group not in GROUP_SIZES:
        raise ConfigError(f"group_size must be one of {GROUP_SIZES}, got {group_size!r}")
    if head_bits not in (None, 4, 8):
        raise ConfigError(f"head_bits must be 8, 4 or None, got {head_bits!r}")
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    patterns = [skip] if isinstance(skip, str) else list(skip)
    targets = [(name, module) for name, module in model.named_modules()
               if isinstance(module, nn.Linear) and not any(fnmatch.fnmatchcase(name, p) for p in patterns)]
    for name, linear in targets:
        layer_bits = head_bits if head_bits is not None and name.split(".")[-1] in OUTPUT_LAYERS else bits
        if layer_bits == 4 and linear.in_features % group:
            layer_bits = 8
        quantized = QuantizedLinear.from_linear(linear, bits=layer_bits, group_size=group if layer_bits == 4 else None,
                                                backend=backend)
        replace_module(model, name, quantized)
    return model


def replace_module(model: nn.Module, name: str, module: nn.Module) -> None:
    """Put ``module`` at the dotted ``name`` of ``model`` (``"decoder.layers.0.self_attn.q_proj"``)."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def set_backend(model: nn.Module, backend: Backend) -> None:
    """Set the ``backend`` of every ``QuantizedLinear`` of ``model`` (one of ``BACKENDS``)."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    for module in model.modules():
        if isinstance(module, QuantizedLinear):
            module.backend = backend


def quantization_record(model: nn.Module) -> dict[str, Any] | None:
    """The ``quantization`` section of a model directory's config for ``model``; ``None`` if nothing is quantized."""
    modules: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if isinstance(module, QuantizedLinear):
            modules.setdefault(module.scheme, []).append(name)
    if not modules:
        return None
    main = Counter({scheme: len(names) for scheme, names in modules.items()}).most_common(1)[0][0]
    bits, group = _parse_scheme(main)
    record: dict[str, Any] = {"method": METHOD, "format_version": FORMAT_VERSION, "bits": bits, "group_size": group,
                              "modules": {scheme: sorted(names) for scheme, names in sorted(modules.items())}}
    int8 = [module for module in model.modules() if isinstance(module, QuantizedLinear) and module.bits == 8]
    if int8 and all(module.backend == "dynamic" for module in int8):
        record["activations"] = "dynamic"
    return record


def apply_quantization_record(model: nn.Module, record: Any, *, origin: str) -> None:
    """Replace the layers ``record`` lists with empty ``QuantizedLinear``s of the recorded schemes, ready for
    the directory's weights (whose shapes and dtypes the loader then checks against them).

    Raises:
        CheckpointError: a record this version cannot read, or one naming layers ``model`` lacks (one line).
    """
    where = f"{origin}: \"quantization\""
    if not isinstance(record, dict) or record.get("method") != METHOD:
        found = record.get("method") if isinstance(record, dict) else type(record).__name__
        raise CheckpointError(f"{where}: method {str(found)[:40]!r} is not one this multihead reads; expected "
                              f"{METHOD!r}")
    version = record.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{where}: format_version {str(version)[:20]} is not one this multihead reads "
                              f"({FORMAT_VERSION})")
    modules = record.get("modules")
    if not isinstance(modules, dict) or not all(isinstance(names, list) for names in modules.values()):
        raise CheckpointError(f"{where}: \"modules\" must map a scheme (int8, int4_g32, ...) to a list of layer "
                              f"names, got {str(modules)[:80]!r}")
    if sum(len(names) for names in modules.values()) > MAX_MODULES:
        raise CheckpointError(f"{where}: lists over {MAX_MODULES:,} layers; expected one entry per linear layer")
    activations = record.get("activations", "none")
    if activations not in ACTIVATIONS:
        raise CheckpointError(f"{where}: \"activations\" is {str(activations)[:40]!r}; expected one of {ACTIVATIONS}")
    backend: Backend = "dynamic" if activations == "dynamic" else "auto"
    layers = dict(model.named_modules())
    for scheme, names in modules.items():
        try:
            bits, group = _parse_scheme(scheme)
        except ValueError as error:
            raise CheckpointError(f"{where}: {error}") from error
        for name in names:
            linear = layers.get(name) if isinstance(name, str) else None
            if not isinstance(linear, nn.Linear):
                raise CheckpointError(f"{where}: lists {str(name)[:80]!r}, which is not a linear layer of this "
                                      f"model; the config and the weights belong to different models")
            if bits == 4 and linear.in_features % group:  # type: ignore[operator]
                raise CheckpointError(f"{where}: {name} has {linear.in_features} inputs, not a multiple of the "
                                      f"recorded group size {group}")
            replace_module(model, name, QuantizedLinear(linear.in_features, linear.out_features, bits=bits,
                                                        group_size=group, bias=linear.bias is not None,
                                                        backend=backend, device=linear.weight.device))


def _parse_scheme(scheme: str) -> tuple[int, int | None]:
    """``"int8"`` -> (8, None); ``"int4_g32"`` -> (4, 32)."""
    if scheme == "int8":
        return 8, None
    if isinstance(scheme, str) and scheme.startswith("int4_g") and scheme[6:].isdigit() \
            and int(scheme[6:]) in GROUP_SIZES:
        return 4, int(scheme[6:])
    raise ValueError(f"unknown scheme {str(scheme)[:40]!r}; expected 'int8' or 'int4_g<G>' with G in {GROUP_SIZES}")
