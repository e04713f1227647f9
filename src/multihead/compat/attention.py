"""``MultiheadAttention`` with ``torch.nn.MultiheadAttention``'s signature, parameters and masks.

Shape legend: ``B`` batch, ``L`` target (query) length, ``S`` source (key) length, ``E`` embed width,
``Ek``/``Ev`` key/value widths, ``H`` heads, ``Dh`` head width.

Torch's mask conventions are translated here, and only here, into the package's one polarity
(True = may attend) plus a finite additive ``bias``. The one intended difference from PyTorch: a
query row that may attend no key gives a zero attention output (so the module returns
``out_proj.bias`` there) and zero weights, where PyTorch gives NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.init import constant_, xavier_normal_, xavier_uniform_

from multihead.functional import scaled_dot_product
from multihead.masks import combine_masks

__all__ = ["MultiheadAttention"]


class MultiheadAttention(nn.Module):
    """Drop-in twin of ``torch.nn.MultiheadAttention``; the attention runs through ``scaled_dot_product``.

    Same constructor, parameter names, ``state_dict`` keys and initialisation as PyTorch, so weights load
    both ways with ``load_state_dict(strict=True)``.

    Args:
        embed_dim: model width ``E``; must be divisible by ``num_heads``.
        num_heads: number of heads ``H``.
        dropout: dropout on attention weights, in training mode.
        bias: biases on the input and output projections.
        add_bias_kv: learn one extra key and value appended to every sequence.
        add_zero_attn: append an all-zero key and value.
        kdim: key width ``Ek``, default ``E``.
        vdim: value width ``Ev``, default ``E``.
        batch_first: inputs and outputs are ``(B, T, E)`` instead of ``(T, B, E)``.
        device: device of the parameters.
        dtype: dtype of the parameters.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        add_bias_kv: bool = False,
        add_zero_attn: bool = False,
        kdim: int | None = None,
        vdim: int | None = None,
        batch_first: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be positive, got {embed_dim} and {num_heads}")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.embed_dim = embed_dim
        self.kdim = embed_dim if kdim is None else kdim
        self.vdim = embed_dim if vdim is None else vdim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads

        self.in_proj_weight: nn.Parameter | None
        self.q_proj_weight: nn.Parameter | None
        self.k_proj_weight: nn.Parameter | None
        self.v_proj_weight: nn.Parameter | None
        if self._qkv_same_embed_dim:
            self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim, **factory))
            self.register_parameter("q_proj_weight", None)
            self.register_parameter("k_proj_weight", None)
            self.register_parameter("v_proj_weight", None)
        else:
            self.q_proj_weight = nn.Parameter(torch.empty(embed_dim, embed_dim, **factory))
            self.k_proj_weight = nn.Parameter(torch.empty(embed_dim, self.kdim, **factory))
            self.v_proj_weight = nn.Parameter(torch.empty(embed_dim, self.vdim, **factory))
            self.register_parameter("in_proj_weight", None)
        self.in_proj_bias: nn.Parameter | None
        if bias:
            self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim, **factory))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias, **factory)
        self.bias_k: nn.Parameter | None = None
        self.bias_v: nn.Parameter | None = None
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, embed_dim, **factory))
            self.bias_v = nn.Parameter(torch.empty(1, 1, embed_dim, **factory))
        self.add_zero_attn = add_zero_attn
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        """PyTorch's scheme (and RNG order): xavier-uniform projections, zero biases, xavier-normal bias_k/v."""
        for weight in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight, self.v_proj_weight):
            if weight is not None:
                xavier_uniform_(weight)
        if self.in_proj_bias is not None:
            constant_(self.in_proj_bias, 0.0)
            constant_(self.out_proj.bias, 0.0)
        for extra in (self.bias_k, self.bias_v):
            if extra is not None:
                xavier_normal_(extra)

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        key_padding_mask: Tensor | None = None,
        need_weights: bool = True,
        attn_mask: Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``query`` to ``key``/``value`` with PyTorch's conventions.

        Args:
            query: ``(L, B, E)``, ``(B, L, E)`` with ``batch_first``, or unbatched ``(L, E)``.
            key: ``(S, B, Ek)``, ``(B, S, Ek)`` or ``(S, Ek)``.
            value: ``(S, B, Ev)``, ``(B, S, Ev)`` or ``(S, Ev)``.
            key_padding_mask: ``(B, S)`` (``(S,)`` unbatched); bool True = ignore the key, or float added.
            need_weights: also return attention weights (takes the explicit path).
            attn_mask: ``(L, S)`` or ``(B * H, L, S)``; bool True = may not attend, or float added.
            average_attn_weights: average the weights over heads.
            is_causal: hint that ``attn_mask`` is causal; ``attn_mask`` decides when given. Without one,
                a causal mask is built (query ``i`` sees keys ``0..i``, as torch's SDPA ``is_causal``).

        Returns:
            output shaped like ``query`` with width ``E``, and weights ``(B, L, S')`` averaged or
            ``(B, H, L, S')`` per head (batch dim dropped when unbatched; ``S'`` counts added keys), or None.
        """
        if query.dim() not in (2, 3) or key.dim() != query.dim() or value.dim() != query.dim():
            raise ValueError(
                "query, key and value must all be 3-D (batched) or all 2-D (unbatched), got shapes "
                f"{tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}"
            )
        is_batched = query.dim() == 3
        self_attention = query is key and key is value
        if not is_batched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)  # (1, T, width)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)  # (1, S)
        elif not self.batch_first:
            query, key, value = query.transpose(0, 1), key.transpose(0, 1), value.transpose(0, 1)  # (B, T, width)
        batch, query_length, _ = query.shape
        key_length = key.shape[1]

        q, k, v = self._in_projection(query, key, value, self_attention)  # (B, L, E), (B, S, E), (B, S, E)
        if self.bias_k is not None and self.bias_v is not None:
            k = torch.cat([k, self.bias_k.expand(batch, 1, -1)], dim=1)  # (B, S + 1, E)
            v = torch.cat([v, self.bias_v.expand(batch, 1, -1)], dim=1)  # (B, S + 1, E)
        q = q.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (B, H, L, Dh)
        k = k.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (B, H, S', Dh)
        v = v.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)  # (B, H, S', Dh)
        if self.add_zero_attn:
            zeros = k.new_zeros(batch, self.num_heads, 1, self.head_dim)  # (B, H, 1, Dh)
            k, v = torch.cat([k, zeros], dim=2), torch.cat([v, zeros], dim=2)  # (B, H, S' + 1, Dh)
        extra_keys = k.shape[2] - key_length

        causal = is_causal and attn_mask is None
        if causal and (query_length != key_length or extra_keys):
            # Same polarity as a torch bool mask: True above the diagonal = may not attend.
            attn_mask = torch.ones(query_length, key_length, dtype=torch.bool, device=q.device).triu(1)
            causal = False
        if attn_mask is not None:
            attn_mask = _attn_mask_4d(attn_mask, batch, self.num_heads, query_length, key_length)
        if key_padding_mask is not None:
            if key_padding_mask.shape != (batch, key_length):
                raise ValueError(
                    f"key_padding_mask must be (B, S) = {(batch, key_length)}, got {tuple(key_padding_mask.shape)}"
                )
            key_padding_mask = key_padding_mask[:, None, None, :]  # (B, 1, 1, S)
        attn_allowed, attn_bias = _from_torch_mask(attn_mask, "attn_mask", extra_keys)
        pad_allowed, pad_bias = _from_torch_mask(key_padding_mask, "key_padding_mask", extra_keys)
        bias = pad_bias if attn_bias is None else attn_bias if pad_bias is None else attn_bias + pad_bias

        out, weights = scaled_dot_product(
            q, k, v,
            mask=combine_masks(attn_allowed, pad_allowed),
            bias=bias,
            is_causal=causal,
            dropout=self.dropout if self.training else 0.0,
            need_weights=need_weights,
        )  # (B, H, L, Dh), weights (B, H, L, S')
        out = out.transpose(1, 2).reshape(batch, query_length, self.embed_dim)  # (B, L, E)
        out = self.out_proj(out)
        if weights is not None and average_attn_weights:
            weights = weights.mean(dim=1)  # (B, L, S')
        if not is_batched:
            out = out.squeeze(0)  # (L, E)
            weights = None if weights is None else weights.squeeze(0)  # (L, S') or (H, L, S')
        elif not self.batch_first:
            out = out.transpose(0, 1)  # (L, B, E)
        return out, weights

    def _in_projection(self, query: Tensor, key: Tensor, value: Tensor, packed: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Project ``(B, L, E)``, ``(B, S, Ek)``, ``(B, S, Ev)`` to queries, keys and values of width ``E``."""
        b_q = b_k = b_v = None
        if self.in_proj_bias is not None:
            b_q, b_k, b_v = self.in_proj_bias.chunk(3)
        if self.in_proj_weight is not None:
            if packed:  # self-attention: one matmul, as PyTorch does
                q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)  # (B, L, E) x3
                return q, k, v
            w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        else:
            assert self.q_proj_weight is not None and self.k_proj_weight is not None and self.v_proj_weight is not None
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)


def _attn_mask_4d(mask: Tensor, batch: int, heads: int, query_length: int, key_length: int) -> Tensor:
    """Torch's ``(L, S)`` or ``(B * H, L, S)`` attention mask as ``(1|B, 1|H, L, S)``."""
    if mask.dim() == 2 and mask.shape == (query_length, key_length):
        return mask[None, None]  # (1, 1, L, S)
    if mask.dim() == 3 and mask.shape == (batch * heads, query_length, key_length):
        return mask.view(batch, heads, query_length, key_length)  # (B, H, L, S)
    raise ValueError(
        f"attn_mask must be (L, S) = {(query_length, key_length)} or (B * num_heads, L, S) = "
        f"{(batch * heads, query_length, key_length)}, got {tuple(mask.shape)}"
    )


def _from_torch_mask(mask: Tensor | None, name: str, extra_keys: int) -> tuple[Tensor | None, Tensor | None]:
    """Split a torch-convention mask into ``(allowed, bias)`` and open it for ``extra_keys`` appended keys.

    A bool mask (True = ignore) becomes ``allowed = ~mask``. A float mask is added to the scores: its
    ``-inf`` entries become not allowed and the finite rest becomes ``bias``.
    """
    if mask is None:
        return None, None
    if mask.dtype == torch.bool:
        allowed, bias = ~mask, None
    elif torch.is_floating_point(mask):
        blocked = torch.isneginf(mask)
        allowed, bias = ~blocked, mask.masked_fill(blocked, 0.0)
    else:
        raise ValueError(f"{name} must be bool (True = ignore) or float (added to scores), got dtype {mask.dtype}")
    if extra_keys:
        allowed = F.pad(allowed, (0, extra_keys), value=True)  # (..., S + extra)
        bias = None if bias is None else F.pad(bias, (0, extra_keys))  # (..., S + extra)
    return allowed, bias
