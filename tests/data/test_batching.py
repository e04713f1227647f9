"""pad_batch shapes and masks; BucketBatchSampler: each index once, deterministic, length-homogeneous batches."""

from __future__ import annotations

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead.data import BucketBatchSampler, pad_batch


def test_pad_batch_shapes_and_mask() -> None:
    ids, mask = pad_batch([[5, 6, 7], [8], []], pad_id=0)
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0], [0, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False], [False, False, False]]


def test_pad_batch_truncates_to_max_length() -> None:
    ids, mask = pad_batch([[1, 2, 3, 4], [5, 6]], pad_id=-1, max_length=3)
    assert ids.tolist() == [[1, 2, 3], [5, 6, -1]]
    assert mask.sum(dim=1).tolist() == [3, 2]
    ids, _ = pad_batch([[1], [2]], pad_id=0, max_length=8)
    assert ids.shape == (2, 1)  # T is the longest, not max_length


def test_pad_batch_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one sequence"):
        pad_batch([], pad_id=0)
    with pytest.raises(ValueError, match="max_length"):
        pad_batch([[1]], pad_id=0, max_length=0)


def check_epoch(sampler: BucketBatchSampler, batches: list[list[int]], count: int) -> None:
    flat = [i for batch in batches for i in batch]
    if sampler.drop_last:
        assert len(flat) == len(set(flat)) and count - len(flat) < sampler.batch_size
    else:
        assert sorted(flat) == list(range(count))  # every index exactly once
    assert len(batches) == len(sampler)
    if not sampler.shuffle:
        assert all(len(batch) == sampler.batch_size for batch in batches[:-1])
    assert sum(len(batch) < sampler.batch_size for batch in batches) <= 1


def test_sampler_is_deterministic_per_seed_and_epoch() -> None:
    generator = random.Random(0)
    lengths = [generator.randint(1, 200) for _ in range(1000)]
    sampler = BucketBatchSampler(lengths, batch_size=16, seed=5)
    epoch0, epoch1 = sampler.batches(0), sampler.batches(1)
    check_epoch(sampler, epoch0, 1000)
    assert epoch0 == BucketBatchSampler(lengths, batch_size=16, seed=5).batches(0)
    assert epoch0 != epoch1
    assert epoch0 != BucketBatchSampler(lengths, batch_size=16, seed=6).batches(0)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    sampler.batches(2)
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is left alone
    sampler.set_epoch(1)
    assert list(sampler) == epoch1


def test_batches_are_length_homogeneous() -> None:
    generator = random.Random(1)
    lengths = [generator.randint(1, 500) for _ in range(4000)]
    sampler = BucketBatchSampler(lengths, batch_size=32, seed=0)

    def padding(batches: list[list[int]]) -> float:
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)

    order = list(range(4000))
    generator.shuffle(order)
    random_batches = [order[i:i + 32] for i in range(0, 4000, 32)]
    assert padding(sampler.batches(0)) < 0.1 * padding(random_batches)
    spreads = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in sampler.batches(0)]
    assert sorted(spreads)[len(spreads) // 2] <= 10  # the median batch spans a few lengths out of 500


def test_unshuffled_batches_follow_length_order() -> None:
    lengths = [5, 1, 3, 3, 9, 2, 7]
    sampler = BucketBatchSampler(lengths, batch_size=3, shuffle=False)
    assert sampler.batches(0) == [[1, 5, 2], [3, 0, 6], [4]] == sampler.batches(7)
    assert BucketBatchSampler(lengths, batch_size=3, shuffle=False, drop_last=True).batches(0) == [[1, 5, 2], [3, 0, 6]]
    assert len(BucketBatchSampler(lengths, batch_size=3, drop_last=True)) == 2


def test_sampler_validates_options() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        BucketBatchSampler([1, 2], batch_size=0)
    with pytest.raises(ValueError, match="bucket_size"):
        BucketBatchSampler([1, 2], batch_size=4, bucket_size=2)
    with pytest.raises(ValueError, match="at least one"):
        BucketBatchSampler([], batch_size=2)
    with pytest.raises(ValueError, match="non-negative integers"):
        BucketBatchSampler([1, -2], batch_size=2)
    with pytest.raises(ValueError, match="non-negative integers"):
        BucketBatchSampler([1.5, 2.0], batch_size=2)


def test_works_as_a_dataloader_batch_sampler() -> None:
    data = [torch.tensor([i]) for i in range(10)]
    loader = torch.utils.data.DataLoader(data, batch_sampler=BucketBatchSampler(list(range(10)), batch_size=4))
    assert sorted(torch.cat(list(loader)).flatten().tolist()) == list(range(10))


@settings(max_examples=80, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 50), min_size=1, max_size=300),
    batch_size=st.integers(1, 20),
    bucket_factor=st.integers(1, 5),
    extra=st.integers(0, 7),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    seed=st.integers(0, 1000),
    epoch=st.integers(0, 5),
)
def test_every_index_once_per_epoch(lengths: list[int], batch_size: int, bucket_factor: int, extra: int,
                                    shuffle: bool, drop_last: bool, seed: int, epoch: int) -> None:
    sampler = BucketBatchSampler(lengths, batch_size=batch_size, shuffle=shuffle, seed=seed,
                                 bucket_size=batch_size * bucket_factor + extra, drop_last=drop_last)
    batches = sampler.batches(epoch)
    check_epoch(sampler, batches, len(lengths))
    assert batches == sampler.batches(epoch)
