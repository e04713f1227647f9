"""What this CPU multiplies in hardware, for choices that depend on it (training precision, int8 kernels)."""

from __future__ import annotations

import torch

__all__ = ["has_amx_tiles"]


def has_amx_tiles() -> bool:
    """Whether the CPU has AMX tiles (Intel Sapphire Rapids and later): bf16 and int8 products run on them."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # private in torch.cpu; absent in old releases
    return bool(probe()) if probe is not None else False
