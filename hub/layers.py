"""Layer selection: the one parser of a ``layers`` config (range text: hub.readings.layer_ranges).

Layer index convention: 0 = embedding output (the input of block 1), k = output of block k,
k = 1..L. Every model kind (causal LM, VLM, Whisper encoder/decoder, CLIP towers) and every
experiment turns its ``layers`` setting into a list through :func:`select_layers`.
"""
from __future__ import annotations

from collections.abc import Sequence

from hub.errors import UserError, UserIndexError


def select_layers(spec: Sequence[int | float] | int | str | None, n_layers: int, owner: str = "the model",
                  fractions: bool = False) -> list[int]:
    """Normalise a layer selection to a list of layer indices in ``0..n_layers``.

    ``None`` or ``"all"`` = every layer 0..L; an int or a list of ints as given (duplicates are
    an error). With ``fractions=True`` a float in (0, 1) is a fraction of depth, rounded to a
    block output in 1..L (``0.44`` is layer 8 of 18 and layer 1 of 3), so one config runs on
    models of any depth; duplicates after rounding are then dropped, not an error.
    """
    if spec is None or (isinstance(spec, str) and spec == "all"):
        return list(range(n_layers + 1))
    if isinstance(spec, str):
        raise UserError(f"layers={spec!r}: expected 'all', a layer index or a list of them")
    items = [spec] if isinstance(spec, (int, float)) else list(spec)
    out: list[int] = []
    for k in items:
        if fractions and isinstance(k, float) and not k.is_integer():
            if not 0 < k < 1:
                raise UserError(f"layer {k!r}: expected an int layer or a fraction of depth in (0, 1)")
            k = min(n_layers, max(1, round(k * n_layers)))
        if fractions and isinstance(k, float):
            k = int(k)
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= n_layers:
            raise UserIndexError(f"layer {k!r} is out of range for {owner}: valid layers are 0..{n_layers} "
                             f"(0 = embeddings, k = output of block k)")
        if k in out:
            if fractions:
                continue
            raise UserError(f"layers {items} contain duplicates")
        out.append(k)
    return out
