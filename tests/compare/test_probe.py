"""The long-range probe: deterministic with a seed, answers correct by construction, the layout as documented."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead.compare.probe import ProbeSpec, generate_probe

SPEC = ProbeSpec(distances=(3, 9, 20), n_keys=10, n_values=4, n_fillers=5, extra_pairs=3, max_lead=6)


STALE = ProbeSpec(distances=(3, 9, 20), n_keys=10, n_values=4, n_fillers=5, extra_pairs=3, max_lead=6,
                  stale_pairs=2)


def read_answer(spec: ProbeSpec, ids: list[int]) -> tuple[int, int]:
    """Solve an example from its tokens alone, reading left to right like assignments: the value last bound to
    the key the final token asks for, and how far before the query that binding sits."""
    query_key = ids[-1] - (1 + spec.n_fillers + spec.n_keys * spec.n_values)
    assert 0 <= query_key < spec.n_keys
    bindings = [(position, spec.decode_pair(token)) for position, token in enumerate(ids[:-1])
                if spec.decode_pair(token) is not None and spec.decode_pair(token)[0] == query_key]  # type: ignore[index]
    assert len(bindings) == 1 + spec.stale_pairs, "the queried key is bound once, plus its stale bindings"
    position, (_, value) = bindings[-1]  # type: ignore[misc]
    assert all(old != value for _, (_, old) in bindings[:-1]), "stale bindings carry other values"  # type: ignore[misc]
    return value, len(ids) - 1 - position


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10**6))
def test_answers_are_correct_by_construction(seed: int) -> None:
    for spec in (SPEC, STALE):
        for example in generate_probe(spec, n=10, seed=seed):
            assert read_answer(spec, example.ids) == (example.label, example.distance)
            pairs = [spec.decode_pair(t) for t in example.ids[:-1] if spec.decode_pair(t) is not None]
            assert len(pairs) == len(spec.distances) + spec.extra_pairs + spec.stale_pairs
            assert len({key for key, _ in pairs}) == len(spec.distances) + spec.extra_pairs, "other keys differ"
            for distance in spec.distances:  # a pair at every listed distance, so position gives nothing away
                assert spec.decode_pair(example.ids[-1 - distance]) is not None
            assert max(spec.distances) + 1 <= len(example.ids) <= spec.max_length
            assert all(0 < token < spec.vocab_size for token in example.ids)


def test_the_same_seed_gives_the_same_examples_and_another_seed_others() -> None:
    first, again = generate_probe(SPEC, n=50, seed=7), generate_probe(SPEC, n=50, seed=7)
    assert first == again
    assert first != generate_probe(SPEC, n=50, seed=8)


def test_a_fixed_distance_and_the_mixture() -> None:
    assert {e.distance for e in generate_probe(SPEC, n=30, seed=0, distance=9)} == {9}
    assert {e.distance for e in generate_probe(SPEC, n=200, seed=0)} == set(SPEC.distances)
    labels = [e.label for e in generate_probe(SPEC, n=400, seed=1)]
    assert set(labels) == set(range(SPEC.n_values))


def test_token_ids_do_not_overlap() -> None:
    fillers = {SPEC.filler(i) for i in range(SPEC.n_fillers)}
    pairs = {SPEC.pair(k, v) for k in range(SPEC.n_keys) for v in range(SPEC.n_values)}
    queries = {SPEC.query(k) for k in range(SPEC.n_keys)}
    assert len(fillers | pairs | queries) == len(fillers) + len(pairs) + len(queries) == SPEC.vocab_size - 1
    assert 0 not in fillers | pairs | queries


def test_bad_specs_name_the_value() -> None:
    with pytest.raises(ValueError, match="distances must differ"):
        ProbeSpec(distances=(4, 4))
    with pytest.raises(ValueError, match=r"n_keys \(3\) must be >= the pairs in a sequence \(5\)"):
        ProbeSpec(distances=(4, 8), n_keys=3, extra_pairs=3)
    with pytest.raises(ValueError, match="stale_pairs must be 0, or >= 1 with stale_pairs"):
        ProbeSpec(distances=(4, 8), extra_pairs=2, max_lead=2, stale_pairs=1)
    with pytest.raises(ValueError, match="distance must be one of"):
        generate_probe(SPEC, n=1, seed=0, distance=5)
