"""Padding token ids into batches, and a sampler that batches texts of similar length together.

Shape legend: ``B`` batch size, ``T`` the longest sequence in the batch (capped by ``max_length``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from multihead.masks import padding_mask_from_lengths

__all__ = ["BucketBatchSampler", "pad_batch"]


def pad_batch(sequences: Sequence[Sequence[int]], *, pad_id: int,
              max_length: int | None = None) -> tuple[Tensor, Tensor]:
    """Pad token id sequences to one length.

    Args:
        sequences: ``B`` sequences of token ids (a sequence may be empty).
        pad_id: the id written after each sequence's end.
        max_length: longer sequences are cut to their first ``max_length`` ids; None: no cut.

    Returns:
        ``ids`` ``(B, T)`` long and ``mask`` ``(B, T)`` bool, True on real tokens, False on padding.
    """
    if len(sequences) == 0:
        raise ValueError("pad_batch needs at least one sequence, got none")
    if max_length is not None and max_length < 1:
        raise ValueError(f"max_length must be >= 1 or None, got {max_length}")
    lengths = [len(sequence) for sequence in sequences]
    width = max(lengths) if max_length is None else min(max(lengths), max_length)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)  # (B, T)
    for row, sequence in enumerate(sequences):
        kept = min(len(sequence), width)
        if kept:
            ids[row, :kept] = torch.as_tensor(list(sequence[:kept]), dtype=torch.long)
    return ids, padding_mask_from_lengths(torch.tensor(lengths).clamp(max=width), width)  # (B, T), (B, T)


class BucketBatchSampler:
    """Batches of example indices whose lengths are close, so that little of each batch is padding.

    With ``shuffle`` (training), an epoch's batches come from a ``torch.Generator`` seeded with ``seed + epoch``
    (never the global RNG): the indices are shuffled, cut into buckets of ``bucket_size``, each bucket is sorted
    by length, the sorted buckets are cut into batches of ``batch_size`` and the batches' order is shuffled.
    Without ``shuffle`` (evaluation), the batches cut the indices sorted by length, shortest first (ties in index
    order). Either way every index appears exactly once per epoch, only the last batch cut may be smaller than
    ``batch_size``, and ``drop_last`` drops that one (then each index appears at most once).

    It works as a ``batch_sampler`` of a ``torch.utils.data.DataLoader``: iterating gives the batches of the
    epoch set by :meth:`set_epoch` (0 at first).

    Args:
        lengths: the length of each example (e.g. its token count).
        batch_size: examples per batch.
        shuffle: shuffle as above (True) or batch in sorted order (False).
        seed: the base seed; epoch ``e`` uses ``seed + e``.
        bucket_size: indices sorted together; None: ``50 * batch_size``. At least ``batch_size``.
        drop_last: drop the one batch smaller than ``batch_size``, if any.
    """

    def __init__(self, lengths: Sequence[int], *, batch_size: int, shuffle: bool = True, seed: int = 0,
                 bucket_size: int | None = None, drop_last: bool = False) -> None:
        if len(lengths) == 0:
            raise ValueError("BucketBatchSampler needs at least one length, got none")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        bucket_size = 50 * batch_size if bucket_size is None else bucket_size
        if bucket_size < batch_size:
            raise ValueError(f"bucket_size must be >= batch_size ({batch_size}), got {bucket_size}")
        values = torch.as_tensor(list(lengths))
        if values.ndim != 1 or values.is_floating_point() or values.is_complex() or bool((values < 0).any()):
            raise ValueError(f"lengths must be a flat sequence of non-negative integers, got {values[:10].tolist()}...")
        self.lengths = values.to(torch.long)  # (N,)
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.bucket_size, self.drop_last = bucket_size, drop_last
        self.epoch = 0

    def __len__(self) -> int:
        """Batches per epoch."""
        count = len(self.lengths)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch that iterating gives (as ``DistributedSampler.set_epoch`` does)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches(self.epoch))

    def batches(self, epoch: int) -> list[list[int]]:
        """The batches of ``epoch``: the same for the same ``(seed, epoch)``, different across epochs."""
        count = len(self.lengths)
        if not self.shuffle:
            order = torch.sort(self.lengths, stable=True).indices
            return self._cut(order.tolist())
        generator = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(count, generator=generator)  # (N,)
        bucket = torch.arange(count) // self.bucket_size  # bucket of each position in ``order``
        key = bucket * (int(self.lengths.max()) + 1) + self.lengths[order]  # sort by bucket, then length
        order = order[torch.sort(key, stable=True).indices]
        batches = self._cut(order.tolist())
        shuffled = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in shuffled]

    def _cut(self, order: list[int]) -> list[list[int]]:
        batches = [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches
