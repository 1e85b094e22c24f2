"""Mutual k-NN alignment (Huh et al. 2024) from the shared k-NN indices.

Rows L2-normalised, k nearest neighbours by inner product (self excluded) within x and
within y (:meth:`hub.metrics.shared.Chunk.knn`, from the Grams); per item the overlap of the
two neighbour sets / k. A mean of per-item scores: its CI bootstraps the items.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hub.metrics.registry import Metric, register
from hub.metrics.shared import Chunk, Part


def overlap(ix: Tensor, iy: Tensor, n: int) -> Tensor:
    """``|NN_x(i) & NN_y(i)|`` for ``ix, iy: [c, n, k]`` -> ``[c, n]`` (float)."""
    k = ix.shape[-1]
    if k * k <= 256:
        return (ix.unsqueeze(-1) == iy.unsqueeze(-2)).any(-1).sum(-1).float()
    mask = torch.zeros(ix.shape[0], n, n, dtype=torch.bool, device=ix.device)
    mask.scatter_(2, iy, True)
    return mask.gather(2, ix).sum(-1).float()


def permuted_neighbours(iy: Tensor, p: Tensor) -> Tensor:
    """Neighbour indices of y with y's items permuted (item i paired with y_p(i)), in the
    permuted labelling: ``iy: [c, n, k]`` -> ``[c, n, k]``."""
    inv = torch.empty_like(p)
    inv[p] = torch.arange(len(p), device=p.device)
    return inv[iy[:, p]]


def _mknn(ch: Chunk) -> Part:
    n, k = ch.n, ch.opts.k
    ix, iy = ch.knn("x"), ch.knn("y")
    items = overlap(ix, iy, n) / k
    pv = None
    if ch.opts.perms is not None and len(ch.opts.perms):
        pv = torch.stack([(overlap(ix, permuted_neighbours(iy, p), n) / k).mean(1) for p in ch.opts.perms], 1)
    return Part(items.mean(1), items=items, perm=pv)


register(Metric(
    "mknn", "neighbours", "mutual k-NN alignment (Huh et al. 2024): mean_i |NN_x(i) & NN_y(i)| / k",
    "k / (n - 1)", lambda n, k: k / (n - 1), (0.0, 1.0),
    frozenset({"orthogonal", "orthogonal_each", "isotropic_scale", "item_scale", "item_permutation"}), _mknn,
    needs=frozenset({"knn"}), uses_k=True, default=True,
    label="mutual k-NN overlap",
))
