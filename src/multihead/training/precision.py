"""``resolve_precision``: what ``training.precision: auto`` means on the device at hand.

bf16 autocast pays for training where the hardware multiplies bf16 in tiles or tensor cores: a CUDA GPU that
supports it, or a CPU with AMX. Elsewhere ``auto`` keeps fp32, as measured: on an AVX2-only EPYC a Multi30k recipe
step took ~40 s under bf16 against ~1.3 s in fp32; on an AVX512-BF16 EPYC without AMX a step of the 128-wide BBC
summariser took 14.4 s of CPU time under bf16 against 2.5 s in fp32 (docs/results/summaries.md).
"""

from __future__ import annotations

import torch

from multihead.cpu_features import has_amx_tiles

__all__ = ["bf16_trains_faster", "resolve_precision"]


def bf16_trains_faster(device: torch.device) -> bool:
    """Whether ``device`` trains faster in bf16 than in fp32: CUDA with bf16 support, or a CPU with AMX tiles."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    return has_amx_tiles()


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` itself, or for ``auto`` ``bf16`` where ``bf16_trains_faster(device)`` and ``fp32`` elsewhere."""
    if precision != "auto":
        return precision
    return "bf16" if bf16_trains_faster(device) else "fp32"
