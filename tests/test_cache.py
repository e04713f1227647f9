"""``KVCache`` and ``DecoderCache``: preallocated buffers written by position, reordered for beams."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from multihead.cache import DecoderCache, KVCache

B, HKV, T, DH = 3, 2, 6, 4


def make_cache(**kwargs: int) -> KVCache:
    """A small float32 cache ``(3, 2, 6, 4)`` unless overridden."""
    options = {"batch_size": B, "max_length": T, "n_kv_heads": HKV, "head_dim": DH, **kwargs}
    return KVCache(**options)


def chunk(length: int, seed: int) -> tuple[Tensor, Tensor]:
    """Random keys and values ``(B, Hkv, length, Dh)``."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(B, HKV, length, DH, generator=gen), torch.randn(B, HKV, length, DH, generator=gen)


def test_new_cache_is_empty_and_preallocated() -> None:
    """A new cache has length 0, full-size zero buffers and reports its sizes."""
    cache = make_cache()
    assert cache.length == 0 and cache.max_length == T and cache.batch_size == B
    assert cache.keys.shape == cache.values.shape == (B, HKV, T, DH)
    keys, values = cache.cached()
    assert keys.shape == values.shape == (B, HKV, 0, DH)


def test_update_appends_by_position() -> None:
    """Successive updates write at ``length`` and return everything cached so far, in order."""
    cache = make_cache()
    k1, v1 = chunk(2, seed=0)
    k2, v2 = chunk(3, seed=1)
    keys, values = cache.update(k1, v1)
    torch.testing.assert_close(keys, k1, rtol=0, atol=0)
    torch.testing.assert_close(values, v1, rtol=0, atol=0)
    keys, values = cache.update(k2, v2)
    assert cache.length == 5
    torch.testing.assert_close(keys, torch.cat([k1, k2], dim=2), rtol=0, atol=0)
    torch.testing.assert_close(values, torch.cat([v1, v2], dim=2), rtol=0, atol=0)
    cached_k, cached_v = cache.cached()
    torch.testing.assert_close(cached_k, keys, rtol=0, atol=0)
    torch.testing.assert_close(cached_v, values, rtol=0, atol=0)
    assert bool((cache.keys[:, :, 5:] == 0).all()), "unwritten positions stay untouched"


def test_update_stores_a_copy() -> None:
    """Changing the tensors passed in after ``update`` does not change the cache."""
    cache = make_cache()
    k, v = chunk(2, seed=2)
    saved = k.clone()
    cache.update(k, v)
    k.add_(100.0)
    torch.testing.assert_close(cache.cached()[0], saved, rtol=0, atol=0)


def test_update_overflow_raises() -> None:
    """Writing past ``max_length`` is a ValueError naming the lengths, and leaves the cache as it was."""
    cache = make_cache()
    cache.update(*chunk(4, seed=3))
    with pytest.raises(ValueError, match=r"4 \+ 3 .*max_length 6"):
        cache.update(*chunk(3, seed=4))
    assert cache.length == 4
    cache.update(*chunk(2, seed=5))
    assert cache.length == 6


@pytest.mark.parametrize(
    ("key_shape", "value_shape"),
    [
        ((B + 1, HKV, 1, DH), (B + 1, HKV, 1, DH)),
        ((B, HKV + 1, 1, DH), (B, HKV + 1, 1, DH)),
        ((B, HKV, 1, DH + 1), (B, HKV, 1, DH + 1)),
        ((B, HKV, 1, DH), (B, HKV, 2, DH)),
    ],
    ids=["batch", "heads", "width", "keys-vs-values"],
)
def test_update_shape_error(key_shape: tuple[int, ...], value_shape: tuple[int, ...]) -> None:
    """Keys/values of the wrong shape are a ValueError naming the shape given."""
    cache = make_cache()
    with pytest.raises(ValueError, match=str(key_shape).replace("(", r"\(").replace(")", r"\)")):
        cache.update(torch.zeros(key_shape), torch.zeros(value_shape))
    assert cache.length == 0


@pytest.mark.parametrize("name", ["batch_size", "max_length", "n_kv_heads", "head_dim"])
def test_constructor_rejects_non_positive_sizes(name: str) -> None:
    """Every size must be positive; the error names the argument and its value."""
    with pytest.raises(ValueError, match=f"{name} must be positive, got -1"):
        make_cache(**{name: -1})


def test_reorder_same_batch_size() -> None:
    """``reorder`` with ``B`` indices permutes (and may duplicate) the rows of the filled positions."""
    cache = make_cache()
    k, v = chunk(4, seed=6)
    cache.update(k, v)
    index = torch.tensor([2, 0, 0])
    cache.reorder(index)
    assert cache.batch_size == B and cache.length == 4
    keys, values = cache.cached()
    torch.testing.assert_close(keys, k[index], rtol=0, atol=0)
    torch.testing.assert_close(values, v[index], rtol=0, atol=0)
    k_next, v_next = chunk(1, seed=7)
    keys, values = cache.update(k_next, v_next)
    torch.testing.assert_close(keys, torch.cat([k[index], k_next], dim=2), rtol=0, atol=0)
    torch.testing.assert_close(values, torch.cat([v[index], v_next], dim=2), rtol=0, atol=0)


def test_reorder_to_different_batch_size() -> None:
    """``reorder`` with ``B' != B`` indices resizes the cache (e.g. expanding sentences to beams)."""
    cache = make_cache()
    k, v = chunk(3, seed=8)
    cache.update(k, v)
    index = torch.tensor([1, 1, 0, 2, 2])
    cache.reorder(index)
    assert cache.batch_size == 5 and cache.length == 3 and cache.max_length == T
    keys, values = cache.cached()
    torch.testing.assert_close(keys, k[index], rtol=0, atol=0)
    torch.testing.assert_close(values, v[index], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(3, 2, 1, 4\)"):
        cache.update(*chunk(1, seed=9))
    gen = torch.Generator().manual_seed(10)
    new_k, new_v = torch.randn(5, HKV, 1, DH, generator=gen), torch.randn(5, HKV, 1, DH, generator=gen)
    keys, _ = cache.update(new_k, new_v)
    torch.testing.assert_close(keys, torch.cat([k[index], new_k], dim=2), rtol=0, atol=0)


def test_reorder_rejects_2d_index() -> None:
    """A 2-D index is a ValueError naming its shape."""
    with pytest.raises(ValueError, match=r"\(1, 3\)"):
        make_cache().reorder(torch.tensor([[0, 1, 2]]))


def test_reset_forgets_positions_and_keeps_buffers() -> None:
    """``reset`` sets ``length`` to 0; the next update writes from position 0 again."""
    cache = make_cache()
    cache.update(*chunk(5, seed=11))
    buffer = cache.keys
    cache.reset()
    assert cache.length == 0 and cache.cached()[0].shape[2] == 0
    assert cache.keys is buffer
    k, v = chunk(2, seed=12)
    keys, values = cache.update(k, v)
    torch.testing.assert_close(keys, k, rtol=0, atol=0)
    torch.testing.assert_close(values, v, rtol=0, atol=0)


def test_cache_dtype() -> None:
    """The cache stores the dtype it was built with."""
    cache = KVCache(batch_size=1, max_length=2, n_kv_heads=1, head_dim=2, dtype=torch.float64)
    assert cache.keys.dtype == cache.values.dtype == torch.float64


def test_decoder_cache_allocate() -> None:
    """``allocate`` builds one self cache per layer (and one cross cache per layer) with the right sizes."""
    cache = DecoderCache.allocate(
        n_layers=3, cross_attention=True, batch_size=2, max_length=7, n_kv_heads=2, head_dim=4, context_length=5
    )
    assert len(cache.self_attention) == 3
    assert cache.cross_attention is not None and len(cache.cross_attention) == 3
    assert all(c.keys.shape == (2, 2, 7, 4) for c in cache.self_attention)
    assert all(c.keys.shape == (2, 2, 5, 4) for c in cache.cross_attention)
    caches = cache.self_attention + cache.cross_attention
    assert len({id(c) for c in caches}) == 6, "every layer gets its own cache"
    assert cache.length == 0
    cache.self_attention[0].update(torch.ones(2, 2, 3, 4), torch.ones(2, 2, 3, 4))
    assert cache.length == 3

    decoder_only = DecoderCache.allocate(
        n_layers=2, cross_attention=False, batch_size=1, max_length=4, n_kv_heads=1, head_dim=2
    )
    assert decoder_only.cross_attention is None and len(decoder_only.self_attention) == 2


def test_decoder_cache_allocate_errors() -> None:
    """Cross caches need a context length; mismatched layer counts are rejected."""
    with pytest.raises(ValueError, match="context_length > 0, got 0"):
        DecoderCache.allocate(n_layers=1, cross_attention=True, batch_size=1, max_length=4, n_kv_heads=1, head_dim=2)
    one = KVCache(batch_size=1, max_length=2, n_kv_heads=1, head_dim=2)
    with pytest.raises(ValueError, match="2 != 1"):
        DecoderCache([one], [one, one])


def test_decoder_cache_reorder_and_reset() -> None:
    """``reorder`` reaches every self and cross cache; ``reset`` empties them all."""
    cache = DecoderCache.allocate(
        n_layers=2, cross_attention=True, batch_size=3, max_length=4, n_kv_heads=1, head_dim=2, context_length=3
    )
    written: list[Tensor] = []
    gen = torch.Generator().manual_seed(13)
    for layer in cache.self_attention + (cache.cross_attention or []):
        keys = torch.randn(3, 1, 2, 2, generator=gen)
        layer.update(keys, keys + 1)
        written.append(keys)
    index = torch.tensor([2, 2, 1, 0])
    cache.reorder(index)
    for layer, keys in zip(cache.self_attention + (cache.cross_attention or []), written, strict=True):
        assert layer.batch_size == 4
        torch.testing.assert_close(layer.cached()[0], keys[index], rtol=0, atol=0)
        torch.testing.assert_close(layer.cached()[1], keys[index] + 1, rtol=0, atol=0)
    cache.reset()
    assert cache.length == 0
    assert all(c.length == 0 for c in cache.self_attention + (cache.cross_attention or []))


def test_truncate_keeps_a_prefix_and_later_updates_overwrite_the_rest() -> None:
    """After ``truncate(n)`` the cache reads as if only the first ``n`` positions had been written."""
    cache = make_cache()
    k1, v1 = chunk(4, seed=0)
    k2, v2 = chunk(2, seed=1)
    cache.update(k1, v1)
    cache.truncate(3)
    keys, values = cache.update(k2, v2)
    assert torch.equal(keys, torch.cat([k1[:, :, :3], k2], dim=2))
    assert torch.equal(values, torch.cat([v1[:, :, :3], v2], dim=2))
    with pytest.raises(ValueError, match=r"truncate length must be in 0\.\.5"):
        cache.truncate(6)
    decoder = DecoderCache([make_cache(), make_cache()])
    for layer in decoder.self_attention:
        layer.update(k1, v1)
    decoder.truncate(1)
    assert decoder.length == 1 and all(layer.length == 1 for layer in decoder.self_attention)
