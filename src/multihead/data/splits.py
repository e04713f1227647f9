"""Reproducible train / validation / test splits: shuffle with a seed, then cut by fractions.

The shuffle is a Fisher-Yates shuffle driven by ``random.Random(seed).random()``, the one part of Python's
``random`` module whose output the language promises not to change between versions, so a seed gives the same
split on every machine and Python version. Each part keeps the items in their original relative order.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Hashable, Sequence
from typing import TypeVar

__all__ = ["split_by_fraction", "stratified_split"]

T = TypeVar("T")


def _check(fractions: Sequence[float], seed: int) -> list[float]:
    fractions = list(fractions)
    if not fractions:
        raise ValueError("fractions must name at least one part, got none")
    if any(not isinstance(f, int | float) or isinstance(f, bool) or not math.isfinite(f) or f <= 0
           for f in fractions):
        raise ValueError(f"fractions must be positive numbers, got {fractions}")
    if abs(math.fsum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"fractions must sum to 1 (within 1e-6), got {fractions} summing to {math.fsum(fractions)}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int, got {seed!r}")
    return fractions


def _shuffled(count: int, rng: random.Random) -> list[int]:
    """A permutation of ``range(count)`` from ``rng.random()`` alone (stable across Python versions)."""
    order = list(range(count))
    for i in range(count - 1, 0, -1):
        j = min(int(rng.random() * (i + 1)), i)
        order[i], order[j] = order[j], order[i]
    return order


def _cut(indices: list[int], fractions: list[float]) -> list[list[int]]:
    """Cut ``indices`` into consecutive parts of sizes ``round(cumulative fraction * n)``; the last takes the rest."""
    total, bounds, running = len(indices), [0], 0.0
    for fraction in fractions[:-1]:
        running += fraction
        bounds.append(min(total, max(bounds[-1], round(running * total))))
    bounds.append(total)
    return [sorted(indices[a:b]) for a, b in itertools.pairwise(bounds)]


def split_by_fraction(items: Sequence[T], *, fractions: Sequence[float], seed: int) -> list[list[T]]:
    """Shuffle ``items`` with ``seed`` and cut them into parts of the given fractions.

    Args:
        items: what to split.
        fractions: one positive fraction per part, summing to 1 (e.g. ``(0.8, 0.1, 0.1)``).
        seed: the shuffle's seed; the same seed and items give the same parts.

    Returns:
        One list per fraction; together they hold every item exactly once, each in the items' original order.
        Part ``k`` ends at ``round((f_0 + ... + f_k) * len(items))``, so small inputs may leave a part empty.
    """
    fractions = _check(fractions, seed)
    parts = _cut(_shuffled(len(items), random.Random(seed)), fractions)
    return [[items[i] for i in part] for part in parts]


def stratified_split(items: Sequence[T], *, labels: Sequence[Hashable], fractions: Sequence[float],
                     seed: int) -> list[list[T]]:
    """Like :func:`split_by_fraction`, but cut each label's items by the fractions, so every part keeps the mix.

    Args:
        items: what to split.
        labels: ``labels[i]`` is the label of ``items[i]``.
        fractions: one positive fraction per part, summing to 1.
        seed: the shuffles' seed (one random stream, labels visited in sorted order).

    Returns:
        One list per fraction, each in the items' original order; every item is in exactly one part.
    """
    fractions = _check(fractions, seed)
    if len(labels) != len(items):
        raise ValueError(f"labels must give one label per item: {len(items)} items, {len(labels)} labels")
    groups: dict[Hashable, list[int]] = {}
    for index, label in enumerate(labels):
        groups.setdefault(label, []).append(index)
    rng = random.Random(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for label in sorted(groups, key=repr):
        members = groups[label]
        for part, cut in zip(parts, _cut([members[i] for i in _shuffled(len(members), rng)], fractions), strict=True):
            part.extend(cut)
    return [[items[i] for i in sorted(part)] for part in parts]
