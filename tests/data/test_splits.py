"""Splits: reproducible, disjoint, covering, stratified, with validated fractions."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead.data import split_by_fraction, stratified_split


def test_split_is_reproducible_disjoint_and_covering() -> None:
    items = list(range(1000))
    parts = split_by_fraction(items, fractions=(0.8, 0.1, 0.1), seed=3)
    assert parts == split_by_fraction(items, fractions=[0.8, 0.1, 0.1], seed=3)
    assert parts != split_by_fraction(items, fractions=(0.8, 0.1, 0.1), seed=4)
    assert [len(p) for p in parts] == [800, 100, 100]
    assert sorted(x for p in parts for x in p) == items
    assert all(p == sorted(p) for p in parts)  # original order kept
    assert parts[1] != list(range(800, 900))  # shuffled before the cut


def test_known_split_is_pinned() -> None:
    """The shuffle uses only ``random.Random(seed).random()``, whose output Python promises to keep; pin a split."""
    assert split_by_fraction(list(range(10)), fractions=(0.3, 0.7), seed=0) == [[0, 4, 9], [1, 2, 3, 5, 6, 7, 8]]


@pytest.mark.parametrize("fractions", [(), (0.5, 0.6), (1.0, 0.0), (1.2, -0.2), (float("nan"),), (0.5, 0.4)])
def test_fractions_are_validated(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="fractions"):
        split_by_fraction([1, 2, 3], fractions=fractions, seed=0)


def test_seed_is_validated() -> None:
    with pytest.raises(ValueError, match="seed"):
        split_by_fraction([1, 2], fractions=(1.0,), seed=1.5)  # type: ignore[arg-type]


def test_stratified_split_keeps_the_label_mix() -> None:
    labels = ["a"] * 700 + ["b"] * 200 + ["c"] * 100
    items = list(range(len(labels)))
    parts = stratified_split(items, labels=labels, fractions=(0.8, 0.1, 0.1), seed=1)
    assert parts == stratified_split(items, labels=labels, fractions=(0.8, 0.1, 0.1), seed=1)
    assert sorted(x for p in parts for x in p) == items
    counts = [Counter(labels[i] for i in part) for part in parts]
    assert counts[0] == {"a": 560, "b": 160, "c": 80}
    assert counts[1] == counts[2] == {"a": 70, "b": 20, "c": 10}
    with pytest.raises(ValueError, match="one label per item"):
        stratified_split(items, labels=labels[:-1], fractions=(1.0,), seed=0)


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(0, 200),
    weights=st.lists(st.integers(1, 10), min_size=1, max_size=4),
    seed=st.integers(0, 2**31),
    stratified=st.booleans(),
)
def test_parts_always_cover_every_item_once(count: int, weights: list[int], seed: int, stratified: bool) -> None:
    fractions = [w / sum(weights) for w in weights]
    items = [f"item{i}" for i in range(count)]
    if stratified:
        parts = stratified_split(items, labels=[i % 3 for i in range(count)], fractions=fractions, seed=seed)
    else:
        parts = split_by_fraction(items, fractions=fractions, seed=seed)
    assert len(parts) == len(fractions)
    flat = [x for p in parts for x in p]
    assert sorted(flat) == sorted(items) and len(set(flat)) == count
    if not stratified:
        for part, fraction in zip(parts, fractions, strict=True):
            assert abs(len(part) - fraction * count) <= 1
