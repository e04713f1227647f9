"""Weight-only int8 and int4 quantization of ``nn.Linear`` layers for CPU decoding, on torch's own kernels.

- :mod:`.formats`: the stored formats (int8 per output channel, int4 in groups) and the math that makes them.
- :mod:`.kernels`: torch's CPU kernels, probed, with their run-time layouts.
- :mod:`.linear`: ``QuantizedLinear``.
- :mod:`.model`: ``quantize_model`` and the record a model directory keeps.
- :mod:`.gguf_blocks`: llama.cpp's Q4_0, Q4_1 and Q8_0 blocks in our formats.
- :mod:`.directory`: ``quantize_model_dir`` (a model directory in, a quantized one out).
"""

from multihead.quantize.gguf_blocks import int4_from_q4_blocks, int8_from_q8_0_blocks, keep_quantized_linears
from multihead.quantize.linear import QuantizedLinear
from multihead.quantize.model import (
    apply_quantization_record,
    quantization_record,
    quantize_model,
    set_backend,
)

__all__ = [
    "QuantizedLinear",
    "apply_quantization_record",
    "int4_from_q4_blocks",
    "int8_from_q8_0_blocks",
    "keep_quantized_linears",
    "quantization_record",
    "quantize_model",
    "set_backend",
]
