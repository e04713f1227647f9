"""Our encoder and decoder layers equal `torch.nn.TransformerEncoderLayer` and `DecoderLayer` given the same weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from multihead import DecoderLayer, EncoderLayer, MultiHeadAttention
from multihead.layers import FeedForward

ATOL = 1e-5


def copy_attention(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    """Split torch's packed ``in_proj`` into our q/k/v projections."""
    q, k, v = theirs.in_proj_weight.detach().chunk(3)
    qb, kb, vb = theirs.in_proj_bias.detach().chunk(3)
    with torch.no_grad():
        for proj, weight, bias in ((ours.q_proj, q, qb), (ours.k_proj, k, kb), (ours.v_proj, v, vb)):
            proj.weight.copy_(weight)
            proj.bias.copy_(bias)
        ours.out_proj.weight.copy_(theirs.out_proj.weight)
        ours.out_proj.bias.copy_(theirs.out_proj.bias)


def copy_feed_forward(ours: FeedForward, linear1: nn.Linear, linear2: nn.Linear) -> None:
    ours.up.load_state_dict(linear1.state_dict())
    ours.down.load_state_dict(linear2.state_dict())


def grads(module: nn.Module) -> list[torch.Tensor]:
    return [p.grad for p in module.parameters()]


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("masking", ["none", "causal", "padded"])
def test_encoder_layer_matches_torch(norm_first: bool, activation: str, masking: str) -> None:
    torch.manual_seed(0)
    d_model, heads, batch, length = 32, 4, 3, 7
    theirs = nn.TransformerEncoderLayer(
        d_model, heads, dim_feedforward=64, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    )
    ours = EncoderLayer(d_model, heads, d_ff=64, activation=activation, norm_first=norm_first)  # type: ignore[arg-type]
    copy_attention(ours.self_attn, theirs.self_attn)
    copy_feed_forward(ours.feed_forward, theirs.linear1, theirs.linear2)
    ours.attn_norm.load_state_dict(theirs.norm1.state_dict())
    ours.ff_norm.load_state_dict(theirs.norm2.state_dict())

    x = torch.randn(batch, length, d_model)
    x_ours, x_theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    kwargs: dict = {}
    our_kwargs: dict = {}
    keep = torch.ones(batch, length, dtype=torch.bool)
    if masking == "causal":
        kwargs = {"src_mask": nn.Transformer.generate_square_subsequent_mask(length), "is_causal": True}
        our_kwargs = {"is_causal": True}
    elif masking == "padded":
        keep[1, 5:] = False
        keep[2, 2:] = False
        kwargs = {"src_key_padding_mask": ~keep}
        our_kwargs = {"mask": keep[:, None, None, :]}
    expected = theirs(x_theirs, **kwargs)
    got = ours(x_ours, **our_kwargs)
    torch.testing.assert_close(got[keep], expected[keep], atol=ATOL, rtol=0)

    weight = torch.randn_like(expected)
    (expected[keep] * weight[keep]).sum().backward()
    (got[keep] * weight[keep]).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, atol=ATOL, rtol=0)
    torch.testing.assert_close(ours.feed_forward.up.weight.grad, theirs.linear1.weight.grad, atol=ATOL, rtol=0)
    q_grad = theirs.self_attn.in_proj_weight.grad.chunk(3)[0]
    torch.testing.assert_close(ours.self_attn.q_proj.weight.grad, q_grad, atol=ATOL, rtol=0)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_decoder_layer_matches_torch(norm_first: bool, padded: bool) -> None:
    torch.manual_seed(1)
    d_model, heads, batch, target, source = 32, 4, 3, 6, 9
    theirs = nn.TransformerDecoderLayer(
        d_model, heads, dim_feedforward=64, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    ours = DecoderLayer(d_model, heads, d_ff=64, activation="relu", norm_first=norm_first)
    copy_attention(ours.self_attn, theirs.self_attn)
    copy_attention(ours.cross_attn, theirs.multihead_attn)
    copy_feed_forward(ours.feed_forward, theirs.linear1, theirs.linear2)
    for mine, its in ((ours.attn_norm, theirs.norm1), (ours.cross_norm, theirs.norm2), (ours.ff_norm, theirs.norm3)):
        mine.load_state_dict(its.state_dict())

    x = torch.randn(batch, target, d_model, requires_grad=True)
    memory = torch.randn(batch, source, d_model, requires_grad=True)
    source_keep = torch.ones(batch, source, dtype=torch.bool)
    if padded:
        source_keep[0, 4:] = False
        source_keep[2, 1:] = False
    expected = theirs(
        x, memory, tgt_mask=nn.Transformer.generate_square_subsequent_mask(target), tgt_is_causal=True,
        memory_key_padding_mask=~source_keep,
    )
    got = ours(x, memory, context_mask=source_keep[:, None, None, :], is_causal=True)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)

    expected_grads = torch.autograd.grad(expected.square().sum(), [x, memory, *theirs.parameters()])
    got_grads = torch.autograd.grad(got.square().sum(), [x, memory, *ours.parameters()])
    torch.testing.assert_close(got_grads[0], expected_grads[0], atol=ATOL, rtol=0)
    torch.testing.assert_close(got_grads[1], expected_grads[1], atol=ATOL, rtol=0)
