"""Which token positions to read from a left-padded batch.

A position spec is one of:
  ``"last"``             the last real token of each item                 -> [batch, d]
  ``"mean"``             mean over a span (default: all tokens but BOS)   -> [batch, d]
  ``"all"``              every real token (unpadded per item later)       -> [batch, seq, d]
  ``[i, j, ...]``        explicit token indices (negative from the end),
                         the same for every item, or one list per item     -> [batch, p, d]
Spans and indices are in *unpadded* token coordinates of each item.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from hub.errors import UserError, UserIndexError

PositionSpec = str | Sequence[int] | Sequence[Sequence[int]]
MODES = ("last", "mean", "all")


@dataclass
class Reader:
    """Reduces a block output ``[batch, seq, d]`` to the requested positions, inside the hook."""

    mode: str
    weights: Tensor | None = None  # [batch, seq] for mean
    index: Tensor | None = None  # [batch, p] absolute padded indices

    def __call__(self, h: Tensor) -> Tensor:
        if self.mode == "last":
            return h[:, -1]
        if self.mode == "mean":
            w = self.weights.to(h.dtype)
            return torch.einsum("bs,bsd->bd", w, h) / w.sum(1, keepdim=True)
        if self.mode == "index":
            rows = torch.arange(h.shape[0], device=h.device)[:, None]
            return h[rows, self.index]
        return h  # all


def _check_mode(positions: PositionSpec) -> str:
    if isinstance(positions, str):
        if positions not in MODES:
            raise UserError(f"positions={positions!r}: expected one of {MODES} or a list of token indices")
        return positions
    if len(positions) == 0:
        raise UserError("positions=[]: expected at least one token index")
    return "index"


def make_reader(
    positions: PositionSpec,
    lengths: Sequence[int],
    seq_len: int,
    spans: Sequence[tuple[int, int]] | None = None,
    bos_offsets: Sequence[int] | None = None,
) -> Reader:
    """Build the reader for one left-padded batch.

    ``lengths``: real tokens per item; ``spans``: per-item (start, end) for ``mean``;
    ``bos_offsets``: 1 where an item starts with BOS (excluded from the default mean span).
    """
    mode = _check_mode(positions)
    n = len(lengths)
    pads = [seq_len - L for L in lengths]
    if mode == "mean":
        w = torch.zeros(n, seq_len)
        for b, L in enumerate(lengths):
            start, end = spans[b] if spans is not None else ((bos_offsets[b] if bos_offsets else 0), L)
            start, end = _norm_index(start, L, "span start", b, allow_end=True), _norm_index(end, L, "span end", b, allow_end=True)
            if end <= start:
                raise ValueError(f"item {b}: empty mean span ({start}, {end}) for a sequence of {L} tokens")
            w[b, pads[b] + start: pads[b] + end] = 1.0
        return Reader("mean", weights=w)
    if mode == "index":
        per_item = positions if _is_nested(positions) else [positions] * n
        if len(per_item) != n:
            raise ValueError(f"positions: got {len(per_item)} index lists for {n} items")
        widths = {len(p) for p in per_item}
        if len(widths) != 1:
            raise ValueError(f"positions: every item needs the same number of indices, got counts {sorted(widths)}")
        idx = torch.tensor(
            [[pads[b] + _norm_index(i, lengths[b], "position", b) for i in p] for b, p in enumerate(per_item)],
            dtype=torch.long,
        )
        return Reader("index", index=idx)
    return Reader(mode)


def _is_nested(positions) -> bool:
    return len(positions) > 0 and not isinstance(positions[0], int)


def _norm_index(i: int, length: int, what: str, item: int, allow_end: bool = False) -> int:
    j = i + length if i < 0 else i
    hi = length if allow_end else length - 1
    if not 0 <= j <= hi:
        raise UserIndexError(f"item {item}: {what} {i} is outside the sequence of {length} tokens (valid: {-length}..{hi})")
    return j
