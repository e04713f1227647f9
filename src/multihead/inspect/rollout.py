"""Attention rollout and attention flow (Abnar and Zuidema, 2020), with a small max-flow solver.

Each layer's heads are averaged and the residual connection is added as in the paper:
``A_hat = 0.5 * A + 0.5 * I``, rows normalised to 1. Rollout multiplies these matrices from the
first layer up; flow treats them as edge capacities of a layered graph (one node per token and layer)
and takes, for each output token and each input token, the value of the maximum flow between them.

Shape legend: ``L`` layers, ``H`` heads, ``T`` tokens.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["attention_flow", "attention_rollout", "max_flow", "residual_attention"]


def residual_attention(weights: Tensor) -> Tensor:
    """``(H, T, T)`` (or ``(T, T)``) per-head weights -> ``(T, T)``: heads averaged, ``0.5 A + 0.5 I``,
    rows normalised (a row of a padded query, all zeros, becomes the identity row)."""
    if weights.dim() == 3:
        weights = weights.mean(dim=0)  # (T, T)
    if weights.dim() != 2 or weights.shape[0] != weights.shape[1]:
        raise ValueError(f"self-attention weights must be (H, T, T) or (T, T), got shape {tuple(weights.shape)}")
    mixed = 0.5 * weights.double() + 0.5 * torch.eye(weights.shape[0], dtype=torch.float64)  # (T, T)
    return mixed / mixed.sum(dim=-1, keepdim=True)


def _checked(layers: Sequence[Tensor]) -> list[Tensor]:
    if not layers:
        raise ValueError("rollout and flow need at least one layer of weights")
    mixed = [residual_attention(weights) for weights in layers]
    if len({tuple(m.shape) for m in mixed}) != 1:
        raise ValueError(f"every layer must have the same tokens, got shapes {[tuple(m.shape) for m in mixed]}")
    return mixed


def attention_rollout(layers: Sequence[Tensor]) -> Tensor:
    """Rollout over ``layers`` (first layer first), each ``(H, T, T)``.

    Returns:
        ``(T, T)`` float64: row ``i`` is how much output token ``i`` of the last layer draws on each
        input token (each row sums to 1).
    """
    mixed = _checked(layers)
    rolled = mixed[0]
    for layer in mixed[1:]:
        rolled = layer @ rolled  # (T, T)
    return rolled


def attention_flow(layers: Sequence[Tensor]) -> Tensor:
    """Attention flow over ``layers`` (first layer first), each ``(H, T, T)``.

    Node ``(l, t)`` is token ``t`` after layer ``l`` (``l = 0`` the inputs); the edge from ``(l - 1, j)``
    to ``(l, i)`` has capacity ``A_hat_l[i, j]``.

    Returns:
        ``(T, T)`` float64: entry ``[i, j]`` is the maximum flow from input ``j`` to output ``i``.
    """
    mixed = [m.tolist() for m in _checked(layers)]
    tokens = len(mixed[0])
    nodes = (len(mixed) + 1) * tokens
    capacity: list[dict[int, float]] = [{} for _ in range(nodes)]
    for level, matrix in enumerate(mixed):
        for i in range(tokens):
            for j in range(tokens):
                if matrix[i][j] > 0.0:
                    capacity[level * tokens + j][(level + 1) * tokens + i] = matrix[i][j]
    top = len(mixed) * tokens
    flow = [[max_flow(capacity, j, top + i) for j in range(tokens)] for i in range(tokens)]
    return torch.tensor(flow, dtype=torch.float64)


def max_flow(capacity: Sequence[dict[int, float]], source: int, sink: int, *, tolerance: float = 1e-12) -> float:
    """The value of a maximum ``source`` -> ``sink`` flow (Edmonds-Karp: shortest augmenting paths).

    Args:
        capacity: ``capacity[u][v]`` is the capacity of edge ``u -> v`` (absent = 0), for nodes ``0..n-1``.
        tolerance: residual capacities at or below it count as saturated (float round-off).
    """
    n = len(capacity)
    if not (0 <= source < n and 0 <= sink < n):
        raise ValueError(f"source {source} and sink {sink} must be nodes 0..{n - 1}")
    if source == sink:
        raise ValueError(f"source and sink must differ, both are {source}")
    residual: list[dict[int, float]] = [dict(edges) for edges in capacity]
    for u, edges in enumerate(capacity):
        for v, value in edges.items():
            if value < 0:
                raise ValueError(f"capacity of edge {u} -> {v} must be >= 0, got {value}")
            residual[v].setdefault(u, 0.0)  # the reverse edge of the residual graph
    total = 0.0
    while True:
        parent = {source: source}
        queue = deque([source])
        while queue and sink not in parent:
            u = queue.popleft()
            for v, left in residual[u].items():
                if left > tolerance and v not in parent:
                    parent[v] = u
                    queue.append(v)
        if sink not in parent:
            return total
        path, v = [], sink
        while v != source:
            path.append((parent[v], v))
            v = parent[v]
        pushed = min(residual[u][v] for u, v in path)
        for u, v in path:
            residual[u][v] -= pushed
            residual[v][u] += pushed
        total += pushed
