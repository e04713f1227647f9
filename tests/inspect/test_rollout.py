"""Attention rollout and flow against hand-computed values; the max-flow solver against textbook cases."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead.inspect.rollout import attention_flow, attention_rollout, max_flow, residual_attention

# Layer 1 has two heads whose mean is [[1, 0, 0], [.5, .5, 0], [0, .5, .5]]; layer 2 one head.
LAYER_1 = torch.tensor([[[1.0, 0, 0], [1, 0, 0], [0, 1, 0]], [[1.0, 0, 0], [0, 1, 0], [0, 0, 1]]])
LAYER_2 = torch.tensor([[[0.0, 1, 0], [0, 0, 1], [1, 0, 0]]])
# By hand: A_hat_1 = [[1, 0, 0], [.25, .75, 0], [0, .25, .75]], A_hat_2 = [[.5, .5, 0], [0, .5, .5], [.5, 0, .5]].
ROLLOUT = [[0.625, 0.375, 0.0], [0.125, 0.5, 0.375], [0.5, 0.125, 0.375]]  # A_hat_2 @ A_hat_1
FLOW = [[0.75, 0.5, 0.0], [0.25, 0.75, 0.5], [0.5, 0.25, 0.5]]  # sum over k of min(A_hat_1[k, j], A_hat_2[i, k])


def test_residual_attention_by_hand() -> None:
    expected = torch.tensor([[1.0, 0, 0], [0.25, 0.75, 0], [0, 0.25, 0.75]], dtype=torch.float64)
    torch.testing.assert_close(residual_attention(LAYER_1), expected)
    zero_row = residual_attention(torch.zeros(2, 2))  # a padded query row keeps only itself
    torch.testing.assert_close(zero_row, torch.eye(2, dtype=torch.float64))


def test_rollout_by_hand() -> None:
    torch.testing.assert_close(attention_rollout([LAYER_1, LAYER_2]), torch.tensor(ROLLOUT, dtype=torch.float64))
    torch.testing.assert_close(attention_rollout([LAYER_1]), residual_attention(LAYER_1))


def test_flow_by_hand() -> None:
    torch.testing.assert_close(attention_flow([LAYER_1, LAYER_2]), torch.tensor(FLOW, dtype=torch.float64))


def _textbook() -> list[dict[int, float]]:
    """Cormen et al., Introduction to Algorithms, figure 26.1: maximum flow 23 from node 0 to node 5."""
    edges = {(0, 1): 16, (0, 2): 13, (1, 3): 12, (2, 1): 4, (2, 4): 14, (3, 2): 9, (3, 5): 20, (4, 3): 7, (4, 5): 4}
    capacity: list[dict[int, float]] = [{} for _ in range(6)]
    for (u, v), value in edges.items():
        capacity[u][v] = float(value)
    return capacity


def test_max_flow_textbook_case() -> None:
    assert max_flow(_textbook(), 0, 5) == pytest.approx(23.0)
    assert max_flow(_textbook(), 5, 0) == 0.0  # no edge leaves the sink
    with pytest.raises(ValueError, match="must differ"):
        max_flow(_textbook(), 1, 1)
    with pytest.raises(ValueError, match=r"nodes 0..5"):
        max_flow(_textbook(), 0, 6)


_matrices = st.integers(min_value=2, max_value=4).flatmap(
    lambda t: st.lists(st.lists(st.floats(0.01, 1.0), min_size=t * t, max_size=t * t), min_size=2, max_size=2)
    .map(lambda rows: [torch.tensor(r).view(1, t, t) for r in rows])
    .map(lambda layers: [w / w.sum(dim=-1, keepdim=True) for w in layers])
)


@settings(deadline=None, max_examples=30)
@given(_matrices)
def test_two_layer_flow_is_the_sum_of_path_minima(layers: list[torch.Tensor]) -> None:
    """In two layers each path input j -> middle k -> output i uses its own two edges: flow = sum of minima."""
    first, second = residual_attention(layers[0]), residual_attention(layers[1])
    expected = torch.minimum(first[None, :, :], second[:, :, None]).sum(dim=1)  # [i, k, j] summed over k
    torch.testing.assert_close(attention_flow(layers), expected)
    rolled = attention_rollout(layers)
    torch.testing.assert_close(rolled.sum(dim=-1), torch.ones(rolled.shape[0], dtype=torch.float64))


def test_three_layer_flow_matches_networkx() -> None:
    networkx = pytest.importorskip("networkx", reason="networkx (an optional reference) is not installed")
    torch.manual_seed(0)
    layers = [torch.softmax(torch.randn(2, 4, 4) * 2, dim=-1) for _ in range(3)]
    ours = attention_flow(layers)
    graph = networkx.DiGraph()
    for level, weights in enumerate(layers):
        mixed = residual_attention(weights)
        for i in range(4):
            for j in range(4):
                graph.add_edge((level, j), (level + 1, i), capacity=float(mixed[i, j]))
    for i in range(4):
        for j in range(4):
            assert float(ours[i, j]) == pytest.approx(networkx.maximum_flow_value(graph, (0, j), (3, i)), abs=1e-9)
