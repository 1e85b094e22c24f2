"""Orthogonal Procrustes similarity: how well one centred, unit-Frobenius representation is
rotated onto the other (Schönemann 1966; as a representation similarity e.g. Ding et al.
2021, Williams et al. 2021).

For centred X ``[n, dx]``, Y ``[n, dy]``: ``sim = ||X^T Y||_* / (||X||_F ||Y||_F)`` in [0, 1],
the nuclear norm being the best inner product <X, Y Q> over orthogonal Q; with dx = dy,
``1 - sim`` is half the squared Procrustes distance of the Frobenius-normalised X and Y.
A rotated (and scaled, translated) copy scores 1. Computed from the d x d cross-covariance
(singular values) when min(dx, dy) <= n, else from the shared n x n Grams: ||X^T Y||_* is the
sum of sqrt(eig(Kx^1/2 Ky Kx^1/2)). ||X||_F^2 = tr(Kx). Baseline: permutation mean
(no analytic chance level: it grows with d / n). CI: exact recomputation on resampled items.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hub.metrics.registry import Metric, register
from hub.metrics.resampling import resample_indices
from hub.metrics.shared import Chunk, Part


def _psd_sqrt(K: Tensor) -> Tensor:
    """Symmetric square root of PSD ``K: [c, n, n]`` (negative rounding eigenvalues -> 0)."""
    e, U = torch.linalg.eigh(K.double())
    return (U * e.clamp_min(0).sqrt().unsqueeze(1)) @ U.transpose(1, 2)


def nuclear_from_grams(Kx: Tensor, Ky: Tensor) -> Tensor:
    """``||X^T Y||_*`` ``[c]`` from centred Grams ``Kx = X X^T``, ``Ky = Y Y^T`` ``[c, n, n]``."""
    S = _psd_sqrt(Kx)
    ev = torch.linalg.eigvalsh(S @ Ky.double() @ S)
    return ev.clamp_min(0).sqrt().sum(-1)


def similarity(xc: Tensor, yc: Tensor, grams: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Procrustes similarity ``[c]`` of centred ``xc: [c, n, dx]``, ``yc: [c, n, dy]``.

    ``grams``: their centred Grams when already computed (used for the norms, and for the
    nuclear norm when n < min(dx, dy))."""
    n = xc.shape[1]
    small_n = n < min(xc.shape[2], yc.shape[2])
    if grams is None and small_n:
        grams = (xc @ xc.transpose(1, 2), yc @ yc.transpose(1, 2))
    if grams is not None:
        nx = grams[0].diagonal(dim1=1, dim2=2).double().sum(-1)
        ny = grams[1].diagonal(dim1=1, dim2=2).double().sum(-1)
    else:
        nx, ny = xc.double().pow(2).sum((1, 2)), yc.double().pow(2).sum((1, 2))
    if small_n:
        nuc = nuclear_from_grams(*grams)
    else:
        nuc = torch.linalg.svdvals((xc.transpose(1, 2) @ yc).double()).sum(-1)
    den = (nx * ny).sqrt()
    return torch.where(den > 0, nuc / den.clamp_min(1e-300), torch.full_like(nuc, float("nan")))


def _centre(t: Tensor) -> Tensor:
    return t - t.mean(1, keepdim=True)


def _procrustes(ch: Chunk) -> Part:
    o = ch.opts
    xc, yc = ch.centred("x")[1], ch.centred("y")[1]
    grams = None
    small_n = ch.n < min(xc.shape[2], yc.shape[2])
    if small_n or ("gram_x" in ch.memo and "gram_y" in ch.memo):  # shared with CKA / RSA
        grams = (ch.gram("x"), ch.gram("y"))
    value = similarity(xc, yc, grams)
    perm = boot = None
    if o.null_perms is not None and len(o.null_perms):
        perm = torch.stack([similarity(xc, yc[:, p]) for p in o.null_perms], 1)
    if o.boot_w_cka is not None:
        boot = torch.stack([similarity(_centre(ch.xs[:, i]), _centre(ch.ys[:, i]))
                            for i in resample_indices(o.boot_w_cka)], 1)
    return Part(value.float(), boot=None if boot is None else boot.float(), perm=None if perm is None else perm.float())


register(Metric(
    "procrustes", "procrustes",
    "orthogonal Procrustes similarity ||X^T Y||_* / (||X||_F ||Y||_F) of centred X, Y (1 - normalised distance)",
    "mean over item permutations of y", None, (0.0, 1.0),
    frozenset({"orthogonal", "orthogonal_each", "isotropic_scale", "translation", "item_permutation"}), _procrustes,
    needs=frozenset({"gram"}), ci="normal", null_baseline=True, undefined="x or y is constant over items there",
    label="orthogonal Procrustes similarity",
))
