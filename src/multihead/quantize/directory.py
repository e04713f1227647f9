"""``quantize_model_dir``: a model directory in, a weight-only quantized copy of it out (``multihead quantize``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from multihead.errors import ConfigError

__all__ = ["quantize_model_dir"]

_OWN_KEYS = ("format", "format_version", "architecture", "architecture_args", "model", "quantization")


def quantize_model_dir(
    source: str | Path,
    destination: str | Path,
    *,
    bits: int,
    group_size: int | None = None,
    skip: Iterable[str] = (),
    head_bits: int | None = 8,
    activations: str = "none",
    overwrite: bool = False,
) -> Path:
    """Load the model directory ``source``, quantize its linear layers (:func:`~multihead.quantize.quantize_model`)
    and write it, with its tokenizer, labels and task settings, to ``destination``.

    Args:
        bits, group_size, skip, head_bits: as :func:`~multihead.quantize.quantize_model`.
        activations: ``"none"`` (weight-only) or ``"dynamic"``: the int8 layers also quantize their inputs per call
            and multiply in integers (``QuantizedLinear(backend="dynamic")``, recorded in the directory); faster
            on CPUs, slightly less exact.
        overwrite: as :func:`~multihead.model_dir.save_model_dir`.

    Raises:
        ConfigError: ``source`` is already quantized, ``destination`` is ``source``, or a bad option.
        CheckpointError, FileNotFoundError: as :func:`~multihead.model_dir.load_model_dir`.
    """
    from multihead.model_dir import load_model_dir, save_model_dir
    from multihead.quantize.model import ACTIVATIONS, quantize_model

    if activations not in ACTIVATIONS:
        raise ConfigError(f"activations must be one of {ACTIVATIONS}, got {activations!r}")
    source, destination = Path(source), Path(destination)
    if destination.resolve() == source.resolve():
        raise ConfigError(f"{destination}: the output directory is the model directory; write the quantized model "
                          f"to another directory")
    loaded = load_model_dir(source)
    if "quantization" in loaded.config:
        raise ConfigError(f"{source}: already quantized ({loaded.config['quantization'].get('bits')}-bit); quantize "
                          f"the floating-point model it came from")
    quantize_model(loaded.model, bits=bits, group_size=group_size, skip=skip, head_bits=head_bits,
                   backend="dynamic" if activations == "dynamic" else "auto")
    extra: dict[str, Any] = {key: value for key, value in loaded.config.items() if key not in _OWN_KEYS}
    extra["quantized_from"] = str(source)
    return save_model_dir(destination, model=loaded.model, tokenizer=loaded.tokenizer, labels=loaded.labels,
                          extra=extra, overwrite=overwrite)
