"""``Packing``: run position-wise work on the real tokens of a padded batch only.

Feed-forward blocks, norms, residuals and the attention projections cost the same for a padding
token as for a real one. An encoder packs its ``(B, T, D)`` activations into ``(N, D)`` real tokens
once, and only the attention kernel sees the padded ``(B, T)`` grid again. The results at real
positions are the same; padded positions come back as zeros.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["Packing"]


@dataclass(frozen=True)
class Packing:
    """Where the ``N`` real tokens of a ``(B, T)`` batch sit: ``index`` holds their flat positions ``(N,)``."""

    index: Tensor
    batch: int
    length: int

    @classmethod
    def from_mask(cls, mask: Tensor) -> Packing | None:
        """``(B, T)`` True = real token -> a ``Packing``, or None when nothing is padded."""
        if mask.dim() != 2:
            raise ValueError(f"a packing mask must be (B, T), got shape {tuple(mask.shape)}")
        if bool(mask.all()):
            return None
        return cls(index=mask.flatten().nonzero().squeeze(1), batch=mask.shape[0], length=mask.shape[1])

    def unpad(self, x: Tensor) -> Tensor:
        """``(B, T, F)`` -> ``(N, F)``, the real tokens in batch-major order."""
        return x.reshape(self.batch * self.length, x.shape[-1]).index_select(0, self.index)  # (N, F)

    def pad(self, x: Tensor) -> Tensor:
        """``(N, F)`` -> ``(B, T, F)`` with zeros at padded positions."""
        full = x.new_zeros(self.batch * self.length, x.shape[-1]).index_copy(0, self.index, x)  # (B*T, F)
        return full.view(self.batch, self.length, x.shape[-1])  # (B, T, F)
