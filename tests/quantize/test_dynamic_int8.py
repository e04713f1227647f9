"""``QuantizedLinear(backend="dynamic")``: int8 layers quantize their input per call and multiply in integers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from multihead.quantize import QuantizedLinear
from multihead.quantize import kernels as kernel_ops
from multihead.quantize.model import quantize_model, set_backend

needs_fbgemm = pytest.mark.skipif(not kernel_ops.has_dynamic_int8_kernel(),
                                  reason="this torch build has no fbgemm dynamic int8 linear (x86 builds do)")


def layer(out_features: int = 96, in_features: int = 64, *, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    linear = nn.Linear(in_features, out_features)
    nn.init.normal_(linear.weight, std=0.05)
    nn.init.normal_(linear.bias, std=0.05)
    return linear


@needs_fbgemm
@pytest.mark.parametrize("shape", [(1, 64), (7, 64), (2, 5, 64)])
def test_within_the_input_rounding_of_the_float64_product(shape: tuple[int, ...]) -> None:
    """The only error left is rounding the input to 128 levels over [min(x, 0), max(x, 0)]: at most half a step
    per input, times the stored weights' absolute row sums."""
    linear = layer()
    module = QuantizedLinear.from_linear(linear, bits=8, backend="dynamic")
    x = torch.randn(*shape)
    weight = module.dequantize().double()  # (N, K), exactly what is stored
    exact = x.double() @ weight.T + linear.bias.double()
    step = (x.max().clamp(min=0) - x.min().clamp(max=0)).double() / 127
    bound = step / 2 * weight.abs().sum(dim=1) * 1.001 + 1e-5  # (N,)
    out = module(x)
    assert out.shape == (*shape[:-1], 96) and out.dtype == torch.float32
    assert ((out.double() - exact).abs() <= bound).all()
    module.backend = "fallback"
    assert not torch.equal(module(x), out)  # the dynamic path really ran: it rounds the input, the fallback does not


@needs_fbgemm
def test_packed_weight_follows_in_place_writes_and_int4_layers_ignore_it() -> None:
    linear = layer()
    module = QuantizedLinear.from_linear(linear, bits=8, backend="dynamic")
    x = torch.randn(4, 64)
    before = module(x)
    with torch.no_grad():
        module.qweight.neg_()
        assert module.bias is not None
        module.bias.neg_()
    assert torch.allclose(module(x), -before, atol=1e-6)  # repacked: not the old weight
    int4 = QuantizedLinear.from_linear(linear, bits=4, group_size=32, backend="dynamic")
    auto = QuantizedLinear.from_linear(linear, bits=4, group_size=32, backend="auto")
    assert torch.equal(int4(x), auto(x))


@needs_fbgemm
def test_a_dynamic_model_stays_close_to_float32() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 32))
    x = torch.randn(16, 64)
    expected = model(x).detach()
    quantized = quantize_model(nn.Sequential(*(m for m in model)), bits=8)
    set_backend(quantized, "dynamic")
    error = (quantized(x) - expected).norm() / expected.norm()
    assert error < 0.03, float(error)


@needs_fbgemm
@pytest.mark.parametrize("engine", ["fbgemm", "onednn"])
def test_each_engine_is_within_its_input_rounding(engine: str) -> None:
    """fbgemm rounds inputs to 7 bits (``reduce_range``), oneDNN to 8: each within half its step per input."""
    if engine not in torch.backends.quantized.supported_engines:
        pytest.skip(f"this torch build has no {engine} engine")
    linear = layer(seed=3)
    module = QuantizedLinear.from_linear(linear, bits=8)
    packed = kernel_ops.dynamic_int8_prepack(module.qweight, module.scales, module.bias, engine=engine)
    assert packed[1] == (engine == "fbgemm")
    x = torch.randn(9, 64)
    weight = module.dequantize().double()
    exact = x.double() @ weight.T + linear.bias.double()
    levels = 127 if engine == "fbgemm" else 255
    step = (x.max().clamp(min=0) - x.min().clamp(max=0)).double() / levels
    bound = step / 2 * weight.abs().sum(dim=1) * 1.001 + 1e-5  # (N,)
    before = torch.backends.quantized.engine
    out = kernel_ops.dynamic_int8_matmul(x, packed)
    assert torch.backends.quantized.engine == before  # packing left the global engine as it was
    assert ((out.double() - exact).abs() <= bound).all()

