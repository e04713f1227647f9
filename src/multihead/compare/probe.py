"""The long-range probe: key-value recall where the answer sits exactly ``k`` tokens before the query.

A sequence starts with ``lead`` filler tokens (``lead`` drawn from ``0..max_lead``, so that no pair sits at a fixed
place next to the start), has ``max(distances) + 1`` tokens more, and ends with a query token naming a key. Before
it, every distance ``d`` in ``distances`` holds a *pair token* (a key and its value in one token) with its own
key, ``extra_pairs`` more pair tokens sit at random free positions, and filler tokens take the rest; all keys
in a sequence differ. The label is the value of the pair whose key the query names, which is the pair at the
distance ``k`` chosen for that example. Because every listed distance holds a pair in every sequence, neither
a pair's position nor its presence gives the answer away: a model must match the query's key with the key of
the token ``k`` positions back, so accuracy at ``k`` measures how well it relates tokens that far apart.

That version has a solution blind to order: a max-pooled detector that fires on both the pair ``(key, value)``
and the query ``key`` joins them from anywhere (TextCNN finds it). With ``stale_pairs`` the queried key is also
bound, earlier (farther than ``k`` from the query), to other values, and the answer is its most recent binding,
the one at ``k``: a model must now also know which of the matching pairs is nearer, as a program reading
assignments in order would. The lead then holds at least ``stale_pairs + extra_pairs`` tokens, so that stale
bindings fit before the pair of the largest distance.

Token ids: ``0`` padding, then fillers, then pair tokens ``(key, value)``, then query tokens ``key``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from multihead.errors import ConfigError

__all__ = ["ProbeExample", "ProbeSpec", "generate_probe"]


@dataclass(frozen=True, kw_only=True)
class ProbeSpec:
    """The probe's alphabet and layout.

    Attributes:
        distances: the distances ``k`` between the answer's pair token and the query (all positive, distinct).
        n_keys, n_values: keys and values; ``n_values`` is the number of classes.
        n_fillers: distinct filler tokens.
        extra_pairs: pair tokens at random free positions, besides one at each distance.
        max_lead: most filler tokens before the pair of the largest distance.
        stale_pairs: earlier bindings of the queried key to other values (0: every key is bound once).
    """

    distances: tuple[int, ...] = (8, 32, 128, 512)
    n_keys: int = 16
    n_values: int = 8
    n_fillers: int = 16
    extra_pairs: int = 4
    max_lead: int = 16
    stale_pairs: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "distances", tuple(self.distances))
        if not self.distances or any(not isinstance(d, int) or d < 1 for d in self.distances):
            raise ConfigError(f"distances must be positive integers, got {self.distances!r:.80}")
        if len(set(self.distances)) != len(self.distances):
            raise ConfigError(f"distances must differ from each other, got {self.distances!r:.80}")
        if self.n_values < 2 or self.n_fillers < 1:
            raise ConfigError(f"n_values must be >= 2 and n_fillers >= 1, got {self.n_values} and {self.n_fillers}")
        if self.extra_pairs < 0 or self.max_lead < 0:
            raise ConfigError(f"extra_pairs and max_lead must be >= 0, got {self.extra_pairs} and {self.max_lead}")
        if self.stale_pairs < 0 or (self.stale_pairs and self.stale_pairs + self.extra_pairs > self.max_lead):
            raise ConfigError(f"stale_pairs must be 0, or >= 1 with stale_pairs + extra_pairs <= max_lead "
                              f"({self.max_lead}), got {self.stale_pairs}")
        pairs = len(self.distances) + self.extra_pairs
        if self.n_keys < pairs:
            raise ConfigError(f"n_keys ({self.n_keys}) must be >= the pairs in a sequence ({pairs}): keys differ")
        if max(self.distances) < pairs:
            raise ConfigError(f"{pairs} pairs do not fit before the query in {max(self.distances) + 1} tokens")

    @property
    def max_length(self) -> int:
        """The longest sequence, the query included."""
        return max(self.distances) + 1 + self.max_lead

    @property
    def vocab_size(self) -> int:
        return 1 + self.n_fillers + self.n_keys * self.n_values + self.n_keys

    def filler(self, index: int) -> int:
        return 1 + index

    def pair(self, key: int, value: int) -> int:
        return 1 + self.n_fillers + key * self.n_values + value

    def query(self, key: int) -> int:
        return 1 + self.n_fillers + self.n_keys * self.n_values + key

    def decode_pair(self, token: int) -> tuple[int, int] | None:
        """``(key, value)`` of a pair token, None for any other token."""
        offset = token - 1 - self.n_fillers
        if not 0 <= offset < self.n_keys * self.n_values:
            return None
        return divmod(offset, self.n_values)


@dataclass(frozen=True)
class ProbeExample:
    ids: list[int]
    label: int  # the value of the queried pair
    distance: int  # k: how far before the query that pair sits


def generate_probe(spec: ProbeSpec, *, n: int, seed: int, distance: int | None = None) -> list[ProbeExample]:
    """``n`` examples, the same for the same ``seed``; ``distance`` fixes ``k`` (else drawn from the list)."""
    if distance is not None and distance not in spec.distances:
        raise ValueError(f"distance must be one of {spec.distances}, got {distance}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    examples = []
    for _ in range(n):
        k = distance if distance is not None else rng.choice(spec.distances)
        shortest_lead = spec.stale_pairs + spec.extra_pairs if spec.stale_pairs else 0  # room for stale pairs
        length = max(spec.distances) + 1 + rng.randint(shortest_lead, spec.max_lead)
        keys = rng.sample(range(spec.n_keys), len(spec.distances) + spec.extra_pairs)
        ids = [spec.filler(rng.randrange(spec.n_fillers)) for _ in range(length)]
        fixed = [length - 1 - d for d in spec.distances]
        free = sorted(set(range(length - 1)) - set(fixed))
        positions = fixed + rng.sample(free, spec.extra_pairs)
        values = [rng.randrange(spec.n_values) for _ in positions]
        for position, key, value in zip(positions, keys, values, strict=True):
            ids[position] = spec.pair(key, value)
        answer = spec.distances.index(k)
        ids[length - 1] = spec.query(keys[answer])
        if spec.stale_pairs:  # earlier bindings of the queried key, all farther than k
            farther = sorted(set(range(length - 1 - k)) - set(positions))
            for position in rng.sample(farther, spec.stale_pairs):
                stale = rng.choice([v for v in range(spec.n_values) if v != values[answer]])
                ids[position] = spec.pair(keys[answer], stale)
        examples.append(ProbeExample(ids=ids, label=values[answer], distance=k))
    return examples
