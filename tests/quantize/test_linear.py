"""``QuantizedLinear`` and the stored formats: against float64 references of the dequantized weight, the kernel path
against the fallback path, and against the float32 layer it came from.

Tolerances (measured on these layers, 256 x 128 with Gaussian weights):

- fallback vs float64 ``x @ dequantized(W)^T``: float32 rounding only (measured 2e-7 of ``|x| @ |W|^T``;
  asserted 1e-5).
- kernel vs float64 ``bf16(x) @ dequantized(W)^T``: the kernel returns bfloat16, so at most half a bfloat16 step
  (2^-8 relative); measured 0.0038.
- kernel vs fallback: the input's rounding to bfloat16 as well; bound 2^-7 of ``|x| @ |W|^T``, measured 0.0021.
- vs the float32 layer (relative Frobenius error of the outputs, both paths): int8 measured 0.0065-0.0070, int4
  group 32 0.077-0.079, group 64 0.089-0.091; asserted below 0.012, 0.11, 0.14.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from multihead.quantize import QuantizedLinear
from multihead.quantize import kernels as kernel_ops
from multihead.quantize.formats import (
    ceil_to_bfloat16,
    dequantize_int4,
    dequantize_int8,
    pack_nibbles,
    quantize_int4,
    quantize_int8,
    unpack_nibbles,
)

SCHEMES = [(8, None), (4, 32), (4, 64)]
VERSUS_FLOAT = {(8, None): 0.012, (4, 32): 0.11, (4, 64): 0.14}


def layer(out_features: int = 256, in_features: int = 128, *, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    linear = nn.Linear(in_features, out_features, bias=bias)
    nn.init.normal_(linear.weight, std=0.05)
    if bias:
        nn.init.normal_(linear.bias, std=0.05)
    return linear


def kernel_available(module: QuantizedLinear) -> bool:
    return module.kernel_fits()


@pytest.mark.parametrize(("bits", "group"), SCHEMES)
def test_fallback_equals_float64_reference_of_the_dequantized_weight(bits: int, group: int | None) -> None:
    linear = layer()
    module = QuantizedLinear.from_linear(linear, bits=bits, group_size=group, backend="fallback")
    x = torch.randn(3, 5, 128)
    weight = module.dequantize().double()  # (N, K)
    reference = x.double() @ weight.T + linear.bias.double()
    scale = x.abs().double() @ weight.abs().T + 1e-30
    assert ((module(x).double() - reference).abs() / scale).max() < 1e-5


@pytest.mark.parametrize(("bits", "group"), SCHEMES)
def test_kernel_equals_float64_reference_up_to_its_bfloat16_output(bits: int, group: int | None) -> None:
    linear = layer()
    module = QuantizedLinear.from_linear(linear, bits=bits, group_size=group, backend="kernel")
    if not kernel_available(module):
        pytest.skip("this torch has no weight-only CPU kernel for this scheme (the fallback is tested)")
    x = torch.randn(7, 128)
    core = x.to(torch.bfloat16).double() @ module.dequantize().double().T  # (M, N): what the kernel multiplies
    out = module(x).double() - linear.bias.double()
    assert ((out - core).abs() <= 2.0**-8 * core.abs() + 1e-6).all()


@pytest.mark.parametrize(("bits", "group"), SCHEMES)
@pytest.mark.parametrize("rows", [1, 2, 5, 33])
def test_kernel_path_equals_fallback_path(bits: int, group: int | None, rows: int) -> None:
    linear = layer()
    module = QuantizedLinear.from_linear(linear, bits=bits, group_size=group, backend="kernel")
    if not kernel_available(module):
        pytest.skip("this torch has no weight-only CPU kernel for this scheme (the fallback is tested)")
    x = torch.randn(rows, 128)
    kernel = module(x)
    module.backend = "fallback"
    fallback = module(x)
    bound = 2.0**-7 * (x.abs() @ module.dequantize().abs().T) + 1e-6
    assert ((kernel - fallback).abs() <= bound).all()
    module.backend = "auto"  # many rows take the fallback, few the kernel
    assert torch.equal(module(x), fallback if rows > 32 else kernel)


@pytest.mark.parametrize(("bits", "group"), SCHEMES)
def test_close_to_the_float32_layer(bits: int, group: int | None) -> None:
    linear = layer()
    x = torch.randn(16, 128)
    expected = linear(x).detach()
    for backend in ("fallback", "kernel"):
        module = QuantizedLinear.from_linear(linear, bits=bits, group_size=group, backend=backend)
        error = (module(x) - expected).norm() / expected.norm()
        assert error < VERSUS_FLOAT[(bits, group)], (backend, float(error))


def test_int8_round_trip_is_within_half_a_step_and_scales_are_bfloat16() -> None:
    weight = torch.randn(64, 48) * torch.logspace(-3, 1, 64)[:, None]  # rows of very different ranges
    weight[5] = 0.0
    qweight, scales = quantize_int8(weight)
    assert qweight.dtype == torch.int8 and int(qweight.abs().max()) <= 127
    assert torch.equal(scales, scales.to(torch.bfloat16).float())
    assert scales[5] == 0 and (qweight[5] == 0).all()
    assert ((dequantize_int8(qweight, scales) - weight).abs() <= scales[:, None] / 2 + 1e-12).all()
    assert (weight.abs().amax(dim=1) / 127 <= scales).all()  # rounded up: no row is clipped


@pytest.mark.parametrize("group", [32, 64])
def test_int4_round_trip_and_kernel_zero_points_are_exact_in_bfloat16(group: int) -> None:
    weight = torch.randn(32, 128) + torch.linspace(-4, 4, 32)[:, None]  # groups away from zero
    weight[3, :group] = 1.5  # a constant group
    qweight, scales, offsets = quantize_int4(weight, group_size=group)
    assert qweight.shape == (32, 64) and scales.shape == offsets.shape == (32, 128 // group)
    restored = dequantize_int4(qweight, scales, offsets)
    step = scales.repeat_interleave(group, dim=1)
    assert ((restored - weight).abs() <= step / 2 + 1e-2 * step + 1e-6).all()
    assert torch.equal(restored[3, :group], torch.full((group,), 1.5))
    zeros = offsets + 8 * scales
    assert torch.equal(scales, scales.to(torch.bfloat16).float())
    assert torch.equal(zeros, zeros.to(torch.bfloat16).float())


@settings(deadline=None, max_examples=25)
@given(st.integers(1, 6), st.integers(1, 8), st.integers(0, 2**31 - 1))
def test_nibbles_pack_and_unpack_are_inverse(rows: int, half_columns: int, seed: int) -> None:
    values = torch.randint(0, 16, (rows, 2 * half_columns), generator=torch.Generator().manual_seed(seed))
    packed = pack_nibbles(values)
    assert packed.shape == (rows, half_columns) and packed.dtype == torch.uint8
    assert torch.equal(unpack_nibbles(packed), values.to(torch.uint8))
    assert torch.equal(packed[:, 0] & 0x0F, values[:, 0].to(torch.uint8))  # column 0 in the low nibble


def test_ceil_to_bfloat16_is_the_smallest_bfloat16_not_below() -> None:
    values = torch.rand(1000) * 10
    up = ceil_to_bfloat16(values)
    assert (up >= values).all() and torch.equal(up, up.to(torch.bfloat16).float())
    below = torch.nextafter(up.to(torch.bfloat16), torch.zeros(1, dtype=torch.bfloat16)).float()
    assert ((below < values) | (up == values)).all()


def test_shapes_the_kernels_do_not_take_fall_back_and_stay_correct() -> None:
    linear = layer(out_features=24, in_features=40)  # 40 inputs: not a multiple of 16 (int8) nor of 32 (int4)
    module = QuantizedLinear.from_linear(linear, bits=8, backend="kernel")
    assert not module.kernel_fits()
    x = torch.randn(2, 40)
    reference = x.double() @ module.dequantize().double().T + linear.bias.double()
    assert torch.allclose(module(x).double(), reference, atol=1e-5)
    with pytest.raises(ValueError, match="group_size"):
        QuantizedLinear.from_linear(linear, bits=4, group_size=32)


def test_output_shape_dtype_and_no_bias() -> None:
    module = QuantizedLinear.from_linear(layer(bias=False), bits=4, group_size=32)
    out = module(torch.randn(2, 3, 4, 128))
    assert out.shape == (2, 3, 4, 256) and out.dtype == torch.float32 and module.bias is None
    assert "int4_g32" in repr(module)


def test_kernel_layout_follows_buffers_written_in_place() -> None:
    module = QuantizedLinear.from_linear(layer(), bits=4, group_size=32, backend="kernel")
    if not kernel_available(module):
        pytest.skip("this torch has no int4 CPU kernel")
    x = torch.randn(1, 128)
    before = module(x)
    with torch.no_grad():
        module.scales.mul_(2)
        module.offsets.mul_(2)
    assert torch.allclose(module(x), 2 * before - module.bias, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("bad", [{"bits": 3}, {"bits": 4, "group_size": 48}, {"bits": 8, "group_size": 32},
                                 {"bits": 8, "backend": "fast"}])
def test_bad_options_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        QuantizedLinear(128, 16, **bad)  # type: ignore[arg-type]


def test_kernel_probes_answer_for_this_torch() -> None:
    assert kernel_ops.has_int8_kernel() == hasattr(torch.ops.aten, "_weight_int8pack_mm")
    assert not kernel_ops.int8_kernel_fits(40)
    assert not kernel_ops.int4_kernel_fits(24, 128, 32)
