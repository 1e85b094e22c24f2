"""A layer-wise cosine probe on paired sides (Liu et al. 2024's WiC probe, for any adapter).

Per layer, the two sides' vectors (``[n, layer, d]``, captured at each side's positions) are
compared by cosine after an anisotropy correction (mean-centering or standardisation per
layer) fitted on a training split only, so a score never depends on which other items are
scored with it. :func:`best_threshold` turns scores into a classifier (cut chosen on one
split, applied to another).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from hub.contract import Side
from hub.errors import UserError
from hub.models import HubModel
from hub.pairs import capture_side

NORMALIZE = ("none", "center", "standardize")


@dataclass
class Normalizer:
    """Anisotropy correction per layer, fitted on one set of states and applied to any other."""

    kind: str = "center"
    mean: Tensor | None = None  # [layer, d]
    std: Tensor | None = None  # [layer, d]

    def __post_init__(self) -> None:
        if self.kind not in NORMALIZE:
            raise UserError(f"normalize={self.kind!r}: expected one of {NORMALIZE}")

    def fit(self, states: Tensor) -> Normalizer:
        """``states [n, layer, d]`` (the training split, both sides)."""
        if self.kind != "none":
            if states.shape[0] < 2:
                raise UserError(f"normalize={self.kind!r} needs at least 2 training vectors, got {states.shape[0]}")
            self.mean = states.mean(0)
            self.std = states.std(0).clamp_min(1e-6)
        return self

    def __call__(self, states: Tensor) -> Tensor:
        if self.kind == "none":
            return states
        if self.mean is None:
            raise RuntimeError("Normalizer used before fit(): fit it on the training split")
        out = states - self.mean
        return out / self.std if self.kind == "standardize" else out


class PairProbe:
    """Per-layer vectors of two aligned sides, and their pairwise cosines after a correction."""

    def __init__(self, hm: HubModel, layers: Sequence[int] | str = "all", normalize: str = "center",
                 batch_size: int = 16) -> None:
        self.hm, self.batch_size = hm, batch_size
        self.layers = hm.check_layers(layers)
        self.norm = Normalizer(normalize)

    def vectors(self, sides: tuple[Side, Side]) -> tuple[Tensor, Tensor]:
        """Raw vectors of each side at its positions: ``[n, layer, d]`` each."""
        a, b = (capture_side(self.hm, s, self.layers, self.batch_size) for s in sides)
        return a, b

    def fit(self, train: tuple[Tensor, Tensor]) -> PairProbe:
        """Fit the anisotropy correction on the training split's vectors (both sides)."""
        self.norm.fit(torch.cat(train))
        return self

    def cosines(self, vecs: tuple[Tensor, Tensor]) -> np.ndarray:
        """``[n, layer]`` cosine of the corrected vectors of each pair."""
        a, b = self.norm(vecs[0]), self.norm(vecs[1])
        return torch.nn.functional.cosine_similarity(a, b, dim=-1).numpy()


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The cut (predict T when score > cut) with the best accuracy on these scores; among
    equally good cuts the middle one, so the choice does not hug a data point."""
    s = np.sort(np.unique(scores))
    cuts = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]])
    acc = np.array([((scores > c) == labels).mean() for c in cuts])
    best = np.flatnonzero(acc == acc.max())
    return float(cuts[best[len(best) // 2]])
