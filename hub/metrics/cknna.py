"""CKNNA (Huh et al. 2024, "The Platonic Representation Hypothesis"): CKA restricted to
mutual k-nearest-neighbour pairs.

Rows are L2-normalised (cosine Grams K, L, uncentred, as in the authors' code). With
M_K[i, j] = 1 when j is among i's k nearest neighbours by K (self excluded):

    CKNNA = HSIC_u(K * M_K * M_L, L * M_K * M_L) / sqrt(HSIC_u(K * M_K, K * M_K) HSIC_u(L * M_L, L * M_L))

HSIC_u the unbiased estimator (Song et al. 2012) exactly as in the authors' ``hsic_unbiased``
(the masked matrices are not symmetric). Identical inputs score 1. It reuses the k-NN
indices and cosine Grams that ``mknn`` computes. Baseline: permutation mean. CI: exact
recomputation on resampled items (copies of an item are each other's nearest neighbours).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from hub.metrics.neighbours import permuted_neighbours
from hub.metrics.registry import Metric, register
from hub.metrics.resampling import resample_indices
from hub.metrics.shared import Chunk, Part, topk_indices


def hsic_u(A: Tensor, B: Tensor) -> Tensor:
    """Unbiased HSIC ``[c]`` of ``A, B: [c, m, m]`` with zero diagonals (float64 sums):
    [sum(A * B^T) + sum A sum B / ((m-1)(m-2)) - 2/(m-2) 1'AB1] / (m(m-3))."""
    m = A.shape[-1]
    f = torch.float64
    t1 = (A * B.transpose(1, 2)).sum((1, 2), dtype=f)
    t2 = A.sum((1, 2), dtype=f) * B.sum((1, 2), dtype=f) / ((m - 1) * (m - 2))
    t3 = (A.sum(1, dtype=f) * B.sum(2, dtype=f)).sum(-1) * 2.0 / (m - 2)  # 1'AB1 = colsum(A).rowsum(B)
    return (t1 + t2 - t3) / (m * (m - 3))


def _mask(idx: Tensor, n: int) -> Tensor:
    return torch.zeros(idx.shape[0], n, n, dtype=torch.bool, device=idx.device).scatter_(2, idx, True)


def cknna_from(K: Tensor, L: Tensor, ix: Tensor, iy: Tensor) -> Tensor:
    """CKNNA ``[c]`` from cosine Grams ``K, L: [c, n, n]`` (diagonals unused) and neighbour
    indices ``ix, iy: [c, n, k]`` (self excluded)."""
    n = K.shape[-1]
    out = []
    for l in range(K.shape[0]):  # one layer at a time: a few n x n temporaries
        mk, ml = _mask(ix[l : l + 1], n), _mask(iy[l : l + 1], n)
        zero = torch.zeros((), dtype=K.dtype, device=K.device)
        a, b = torch.where(mk, K[l : l + 1], zero), torch.where(ml, L[l : l + 1], zero)
        both = mk & ml
        kl = hsic_u(torch.where(both, a, zero), torch.where(both, b, zero))
        out.append(kl / (hsic_u(a, a) * hsic_u(b, b)).sqrt())
    return torch.cat(out)


def _resample(K: Tensor, b: Tensor) -> Tensor:
    """Cosine Gram of the resampled items ``b: [n]``: copies of one item have cosine 1."""
    Kb = K[:, b][:, :, b]
    Kb.masked_fill_((b[:, None] == b[None, :]).unsqueeze(0), 1.0)
    Kb.diagonal(dim1=1, dim2=2).fill_(-math.inf)
    return Kb


def _cknna(ch: Chunk) -> Part:
    o = ch.opts
    ix, iy = ch.knn("x"), ch.knn("y")
    K, L = ch.cos_gram("x"), ch.cos_gram("y")
    value = cknna_from(K, L, ix, iy)
    perm = boot = None
    if o.null_perms is not None and len(o.null_perms):
        perm = torch.stack([cknna_from(K, L[:, p][:, :, p], ix, permuted_neighbours(iy, p)) for p in o.null_perms], 1)
    if o.boot_w_cka is not None:
        vals = []
        for b in resample_indices(o.boot_w_cka):
            Kb, Lb = _resample(K, b), _resample(L, b)
            vals.append(cknna_from(Kb, Lb, topk_indices(Kb, o.k), topk_indices(Lb, o.k)))
        boot = torch.stack(vals, 1)
    return Part(value.float(), boot=None if boot is None else boot.float(), perm=None if perm is None else perm.float())


register(Metric(
    "cknna", "neighbours", "CKA restricted to mutual k-NN pairs (Huh et al. 2024), cosine Grams, unbiased HSIC",
    "mean over item permutations of y", None, (-math.inf, math.inf),
    frozenset({"orthogonal", "orthogonal_each", "isotropic_scale", "item_scale", "item_permutation"}), _cknna,
    needs=frozenset({"knn", "cos_gram"}), min_n=4, uses_k=True, ci="normal", null_baseline=True,
    undefined="the k-NN-masked HSIC of x or y with itself is <= 0",
    label="CKNNA (CKA on mutual k-NN pairs)",
))
