"""``RecurrentState``: the hidden (and cell) state of a GRU/LSTM stack, carried between decoding steps.

It plays the part a ``DecoderCache`` plays for a Transformer: the model reads and replaces it at each step,
and beam search reorders its rows with ``reorder``. Shape legend: ``L`` layers, ``B`` rows, ``H`` hidden width.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["RecurrentState"]


class RecurrentState:
    """Empty until the model's first step fills it; ``length`` counts the tokens consumed so far.

    Attributes:
        hidden: ``(L, B, H)`` hidden state, or ``None`` before the first step.
        cell: ``(L, B, H)`` LSTM cell state (``None`` for a GRU or before the first step).
        keys: ``(B, S, A)`` an encoder-decoder's projected attention keys, kept so that each step does not
            recompute them (batch first; ``None`` for a language model).
    """

    def __init__(self, *, batch_size: int) -> None:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size <= 0:
            raise ValueError(f"RecurrentState batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self.hidden: Tensor | None = None
        self.cell: Tensor | None = None
        self.keys: Tensor | None = None
        self.length = 0

    @property
    def started(self) -> bool:
        return self.hidden is not None

    def get(self) -> Tensor | tuple[Tensor, Tensor]:
        """The state in the form ``nn.GRU`` (a tensor) or ``nn.LSTM`` (a pair) takes."""
        if self.hidden is None:
            raise ValueError("RecurrentState is empty: the model fills it on its first step")
        return self.hidden if self.cell is None else (self.hidden, self.cell)

    def set(self, state: Tensor | tuple[Tensor, Tensor], *, steps: int) -> None:
        """Store the state an ``nn.GRU``/``nn.LSTM`` returned after consuming ``steps`` more tokens."""
        hidden, cell = state if isinstance(state, tuple) else (state, None)
        if hidden.shape[1] != self.batch_size:
            raise ValueError(f"RecurrentState holds {self.batch_size} rows, got a state of {hidden.shape[1]} rows")
        self.hidden, self.cell = hidden, cell
        self.length += steps

    def reorder(self, index: Tensor) -> None:
        """Keep rows ``index`` ``(B',)`` in that order (finished rows dropped, beams repeated or reordered)."""
        self.batch_size = int(index.numel())
        if self.hidden is not None:
            self.hidden = self.hidden.index_select(1, index.to(self.hidden.device))
        if self.cell is not None:
            self.cell = self.cell.index_select(1, index.to(self.cell.device))
        if self.keys is not None:
            self.keys = self.keys.index_select(0, index.to(self.keys.device))
