"""Representational similarity analysis (Kriegeskorte et al. 2008): the Spearman correlation
of the two representational dissimilarity matrices' upper triangles.

Dissimilarity = Euclidean distance between items, read off the shared centred Grams
(D_ij^2 = K_ii + K_jj - 2 K_ij; Spearman is rank-based, so D^2 ranks like D). Ties get
average ranks. Invariant to rotations, scaling and translation of either side. Baseline:
permutation mean (a Mantel-type null; near 0). CI: exact recomputation on resampled items
(copies of an item are at distance 0), O(n^2 log n) per resample.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hub.metrics.registry import Metric, register
from hub.metrics.resampling import resample_indices
from hub.metrics.shared import Chunk, Part


def avg_ranks(v: Tensor) -> Tensor:
    """Ranks (1-based, ties averaged) along the last dim of ``v: [c, M]``, float64."""
    c, M = v.shape
    sv, order = v.sort(dim=-1)
    new = torch.ones_like(sv, dtype=torch.bool)
    new[:, 1:] = sv[:, 1:] != sv[:, :-1]
    gid = new.long().cumsum(-1) - 1  # tie group of each sorted position
    pos = torch.arange(M, device=v.device, dtype=torch.float64).expand(c, M)
    first = torch.full((c, M), float(M), dtype=torch.float64, device=v.device).scatter_reduce(1, gid, pos, "amin")
    last = torch.zeros((c, M), dtype=torch.float64, device=v.device).scatter_reduce(1, gid, pos, "amax")
    r_sorted = ((first + last) / 2 + 1).gather(1, gid)
    return torch.empty_like(r_sorted).scatter_(1, order, r_sorted)


def _pearson(a: Tensor, b: Tensor) -> Tensor:
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return (a * b).sum(-1) / ((a * a).sum(-1) * (b * b).sum(-1)).sqrt()


def rdm_upper(K: Tensor) -> Tensor:
    """Squared Euclidean distances ``[c, n(n-1)/2]`` (pairs i < j) from a Gram ``[c, n, n]``."""
    n = K.shape[-1]
    i, j = torch.triu_indices(n, n, 1, device=K.device)
    d = K.diagonal(dim1=1, dim2=2)
    return d[:, i] + d[:, j] - 2 * K[:, i, j]


def spearman_rdm(Kx: Tensor, Ky: Tensor) -> Tensor:
    """RSA ``[c]`` from two Grams ``[c, n, n]``."""
    return _pearson(avg_ranks(rdm_upper(Kx)), avg_ranks(rdm_upper(Ky)))


def _rsa(ch: Chunk) -> Part:
    o = ch.opts
    Kx, Ky = ch.gram("x"), ch.gram("y")
    n = ch.n
    rx, ry = avg_ranks(rdm_upper(Kx)), avg_ranks(rdm_upper(Ky))
    value = _pearson(rx, ry)
    perm = boot = None
    if o.null_perms is not None and len(o.null_perms):
        i, j = torch.triu_indices(n, n, 1, device=Kx.device)
        full = torch.zeros(ry.shape[0], n, n, dtype=ry.dtype, device=ry.device)
        full[:, i, j] = ry
        full = full + full.transpose(1, 2)  # rank of pair (a, b) for any order
        perm = torch.stack([_pearson(rx, full[:, p[i], p[j]]) for p in o.null_perms], 1)
    if o.boot_w_cka is not None:
        boot = torch.stack([spearman_rdm(Kx[:, b][:, :, b], Ky[:, b][:, :, b])
                            for b in resample_indices(o.boot_w_cka)], 1)
    return Part(value.float(), boot=None if boot is None else boot.float(), perm=None if perm is None else perm.float())


register(Metric(
    "rsa", "rsa", "RSA: Spearman correlation of the Euclidean RDMs' upper triangles (Kriegeskorte et al. 2008)",
    "mean over item permutations of y", None, (-1.0, 1.0),
    frozenset({"orthogonal", "orthogonal_each", "isotropic_scale", "translation", "item_permutation"}), _rsa,
    needs=frozenset({"gram"}), min_n=3, ci="normal", null_baseline=True,
    undefined="all distances of x or y are equal there",
    label="RSA (Spearman correlation of the RDMs)",
))
