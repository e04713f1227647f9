"""``TextStream``: token ids in, text pieces out, for streaming a reply as it is generated.

A byte-level tokenizer may split one character over several tokens; decoding such a prefix gives a
replacement character (U+FFFD). The stream decodes a short window of recent tokens and shows new text
only once it no longer ends in an incomplete character. With stop strings, text that could be the start
of one is held back until it is clear; the text is cut before the first stop string.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from multihead.errors import ConfigError

__all__ = ["TextStream"]

_INCOMPLETE = "\ufffd"


class TextStream:
    """Incremental decoding of one sequence.

    Args:
        decode: token ids -> text (e.g. ``Tokenizer.decode``).
        stop_strings: texts that end the stream; neither they nor what follows them is ever shown.

    Attributes:
        text: everything shown so far (the pieces joined).
        stopped: a stop string appeared; later tokens add nothing.
    """

    def __init__(self, decode: Callable[[list[int]], str], *, stop_strings: Sequence[str] = ()) -> None:
        if isinstance(stop_strings, str) or any(not isinstance(s, str) or not s for s in stop_strings):
            raise ConfigError(f"stop_strings must be a sequence of non-empty strings, got {stop_strings!r:.80}")
        self.decode = decode
        self.stop_strings = tuple(stop_strings)
        self.ids: list[int] = []
        self.text = ""
        self.stopped = False
        self._prefix = 0  # window start: decoding from here reproduces the shown text's tail exactly
        self._read = 0  # tokens whose text is already taken
        self._held = ""  # decoded text not shown yet (it may start a stop string)

    def push(self, token: int) -> str:
        """Add one token; returns the text that can be shown now ('' while a character or stop is unclear)."""
        self.ids.append(int(token))
        if self.stopped:
            return ""
        before = self.decode(self.ids[self._prefix : self._read])
        after = self.decode(self.ids[self._prefix :])
        if after.endswith(_INCOMPLETE) or len(after) <= len(before):
            return ""
        self._prefix, self._read = self._read, len(self.ids)
        return self._show(after[len(before) :])

    def finish(self) -> str:
        """The text still held back, at the end of the sequence (an incomplete character shows as U+FFFD)."""
        if self.stopped:
            return ""
        before = self.decode(self.ids[self._prefix : self._read])
        after = self.decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        piece = self._show(after[len(before) :])
        rest, self._held = self._held, ""
        self.text += rest
        return piece + rest

    def _show(self, new: str) -> str:
        """Add decoded text; returns the part that cannot be (the start of) a stop string."""
        held = self._held + new
        cuts = [cut for cut in (held.find(stop) for stop in self.stop_strings) if cut >= 0]
        if cuts:
            piece, self._held, self.stopped = held[: min(cuts)], "", True
        else:
            keep = max((k for stop in self.stop_strings for k in range(1, len(stop)) if held.endswith(stop[:k])),
                       default=0)
            piece, self._held = held[: len(held) - keep], held[len(held) - keep :]
        self.text += piece
        return piece
