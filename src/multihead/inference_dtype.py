"""The floating-point type a loaded model decodes in: ``float32`` (the default, exact against the references) or
``bfloat16`` (weights and activations in bfloat16; beam and sampling scores stay float32).

On a CPU with AMX tiles (Intel Sapphire Rapids and later) bfloat16 matrix products run 2.5-6x faster than
float32 ones, and beam-4 translation of Multi30k 1.54x (``docs/results/deploy.md``); elsewhere bfloat16 is
usually slower. Outputs differ from float32's where two choices are closer than bfloat16's rounding.
"""

from __future__ import annotations

import torch
from torch import nn

from multihead.errors import ConfigError

__all__ = ["INFERENCE_DTYPES", "cast_for_inference"]

INFERENCE_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def cast_for_inference(model: nn.Module, dtype: str | torch.dtype | None, *, where: str) -> nn.Module:
    """``model`` with its floating-point weights and buffers in ``dtype`` (in place; ``None`` leaves it alone).

    Raises:
        ConfigError: an unknown ``dtype``, or a quantized model (its int8/int4 layers set their own arithmetic),
            in one line naming ``where`` (the model directory).
    """
    if dtype is None:
        return model
    names = {value: name for name, value in INFERENCE_DTYPES.items()}
    if isinstance(dtype, str):
        if dtype not in INFERENCE_DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(INFERENCE_DTYPES)}, got {dtype!r}")
        dtype = INFERENCE_DTYPES[dtype]
    if dtype not in names:
        raise ConfigError(f"dtype must be one of {sorted(INFERENCE_DTYPES)}, got {dtype}")
    from multihead.quantize import QuantizedLinear

    if dtype != torch.float32 and any(isinstance(module, QuantizedLinear) for module in model.modules()):
        raise ConfigError(f"{where}: a quantized model decodes with its own int8/int4 arithmetic; dtype "
                          f"{names[dtype]} applies to floating-point models (load the model it was quantized from)")
    return model.to(dtype)
