"""The shared comparator: per-layer similarity of paired hidden states, with baselines and CIs.

Every function takes two stacks of states ``x, y: [layer, n, d]`` where ``x[:, i]`` is paired
with ``y[:, i]`` (a sentence and its translation, code and its description, an image and its
caption ...). All layers are computed at once: Gram matrices are batched over layers
(``torch.bmm``), computed once in fp32 and reused by every metric that needs them.

Metrics (the ``metric`` column of the tidy table; higher = more similar for all of them):

=================  ==========================================================  =================
name               definition                                                  ``baseline``
=================  ==========================================================  =================
``cos_adjusted``   mean_i cos(x_i, y_i) - mean_{i!=j} cos(x_i, y_j)             0
                   (Wu et al. 2024, Eq. 1: paired minus unpaired)
``cos_centered``   the same after centring x and y (each by its own mean, or   0
                   by means fitted elsewhere: ``x_mean`` / ``y_mean``)
``cka``            linear CKA, *biased* HSIC (Kornblith et al. 2019), = the     permutation mean
                   RV coefficient                                               (exact, analytic)
``cka_debiased``   linear CKA from the *unbiased* HSIC estimator (Song et al.   0
                   2012; as used for CKA by Nguyen et al. 2021)
``mknn``           mutual k-NN alignment (Huh et al. 2024)                      k / (n - 1)
``retrieval_top1`` top-1 retrieval accuracy, mean of x->y and y->x, cosine or   1 / n
                   CSLS (Conneau et al. 2018)
``cos_paired``     mean_i cos(x_i, y_i) (raw; on request)                       unpaired mean
``cos_unpaired``   mean_{i!=j} cos(x_i, y_j) (raw; on request)                  itself
``retrieval_x2y``  retrieval accuracy, queries x, candidates y (on request)    1 / n
``retrieval_y2x``  retrieval accuracy, queries y, candidates x (on request)    1 / n
=================  ==========================================================  =================

Why the baselines: LM hidden states are anisotropic (unrelated inputs often have cosine > 0.9)
and biased CKA scores independent high-dimensional noise as similar, so a raw number means
nothing without its chance level. ``baseline`` is the analytic chance / unpaired value; pass
``baseline="permutation"`` to :func:`compare` for the empirical permutation null instead
(y's items shuffled, the same permutation at every layer). When a score is maximised over
layers, compare the maximum with :func:`max_over_layers_null`, not with a per-layer null.

Confidence intervals are bootstraps over items (deterministic given ``seed``; the same
resamples at every layer and for every metric):

* mean-type metrics (cosine family, retrieval, mknn) are means of per-item scores, so the
  per-item scores are resampled (``n_boot`` resamples, percentile interval). For
  ``cos_adjusted`` the per-item score is paired cosine minus the mean unpaired cosine of that
  row; the unpaired means are not recomputed per resample (a first-order approximation).
* CKA is not a mean of per-item scores: each resample recomputes CKA *exactly* from the
  Gram matrices already computed (item i weighted by its multiplicity, which equals
  indexing the Gram with the resampled items; for the debiased form, pairs of copies of the
  same item are treated as the excluded diagonal). This costs matrix products with the
  Grams, so it uses ``n_boot_cka = min(n_boot, 20)`` resamples by default and a normal
  interval ``value +/- z * bootstrap SE`` (an SE is stable with few resamples; percentiles
  are not).

The biased-CKA baseline is the exact mean of CKA over all item permutations,
tr(K) tr(L) / ((n - 1) ||K||_F ||L||_F) for centred Grams K, L (the RV-coefficient null
mean, Kazi-Aoual et al. 1995); it approaches 1 when d >> n, which is the point of showing it.
The debiased numerator has permutation mean exactly 0.

Cost: the cosine family is O(L n d). Everything else rests on three fp32 n x n Grams per
layer: x x^T and y y^T (centred; mknn and both CKAs; only their upper block triangle is
multiplied) and the cross cosine x y^T (retrieval). Layers are processed in chunks so that
one stacked ``[chunk, n, n]`` matrix stays under 64 MiB.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

__all__ = [
    "METRICS",
    "EXTRA_METRICS",
    "ALL_METRICS",
    "COLUMNS",
    "compare",
    "permutation_null",
    "max_over_layers_null",
    "MaxOverLayersNull",
    "preprocess",
    "clamp_outliers",
    "cos_paired",
    "cos_unpaired",
    "cos_adjusted",
    "cos_centered",
    "cka",
    "cka_debiased",
    "mknn",
    "retrieval_top1",
]

METRICS: tuple[str, ...] = (
    "cos_adjusted",
    "cos_centered",
    "cka",
    "cka_debiased",
    "mknn",
    "retrieval_top1",
)
EXTRA_METRICS: tuple[str, ...] = ("cos_paired", "cos_unpaired", "retrieval_x2y", "retrieval_y2x")
ALL_METRICS: tuple[str, ...] = METRICS + EXTRA_METRICS
COLUMNS: tuple[str, ...] = ("metric", "layer", "value", "baseline", "ci_low", "ci_high", "n")

_COS = frozenset({"cos_adjusted", "cos_paired", "cos_unpaired"})
_RETRIEVAL = frozenset({"retrieval_top1", "retrieval_x2y", "retrieval_y2x"})
_CKA = frozenset({"cka", "cka_debiased"})
_SAME_D = _COS | _RETRIEVAL | {"cos_centered"}
_CKA_BOOT_DEFAULT = 20
# Upper bound on one stacked [chunk, n, n] fp32 matrix; layers are processed in chunks of
# this size so peak memory stays ~ a handful of these regardless of the number of layers.
_CHUNK_BYTES = 64 * 2**20

MeanLike = Tensor | np.ndarray | None


# ---------------------------------------------------------------------------------------
# validation and preprocessing
# ---------------------------------------------------------------------------------------
def _as_states(t: object, name: str) -> Tensor:
    """``t`` as an fp32 tensor ``[layer, n, d]`` (a 2-D ``[n, d]`` input is one layer)."""
    if not isinstance(t, Tensor):
        try:
            t = torch.as_tensor(np.asarray(t))
        except Exception as exc:  # pragma: no cover - exotic inputs
            raise TypeError(f"{name} must be a tensor or array [layer, n, d]; got {type(t)}") from exc
    if t.is_complex():
        raise ValueError(f"{name} must be real-valued; got dtype {t.dtype}")
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3:
        raise ValueError(f"{name} must have shape [layer, n, d]; got shape {tuple(t.shape)}")
    if min(t.shape) == 0:
        raise ValueError(f"{name} has an empty dimension: shape {tuple(t.shape)} [layer, n, d]")
    t = t.detach().to(torch.float32)
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise ValueError(
            f"{name} contains {bad} non-finite values (NaN or inf) out of {t.numel()}; "
            "expected finite hidden states"
        )
    return t


def _check_pair(x: Tensor, y: Tensor, metrics: Sequence[str]) -> None:
    if x.shape[0] != y.shape[0] or x.shape[1] != y.shape[1]:
        raise ValueError(
            "x and y must have the same number of layers and items ([layer, n, d]); "
            f"got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    need_d = sorted(set(metrics) & _SAME_D)
    if need_d and x.shape[2] != y.shape[2]:
        raise ValueError(
            f"metrics {need_d} compare x and y directly and need the same width d; got "
            f"x {tuple(x.shape)} and y {tuple(y.shape)} ([layer, n, d]). "
            "cka, cka_debiased and mknn accept different widths."
        )
    if x.device != y.device:
        raise ValueError(f"x and y must be on the same device; got {x.device} and {y.device}")


def _check_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError(f"metrics must name at least one of {ALL_METRICS}; got an empty list")
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; expected names from {ALL_METRICS}")
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics: duplicates in {metrics}")
    return metrics


def _check_int(value: object, name: str, low: int, high: int | None = None, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {rng}{why}; got {name}={value}")
    return value


def _check_n(n: int, metrics: Sequence[str], k: int, csls: bool, csls_k: int) -> None:
    if n < 2:
        raise ValueError(f"n (number of paired items) must be >= 2 to have unpaired items; got n={n}")
    if "cka_debiased" in metrics and n < 4:
        raise ValueError(f"cka_debiased (unbiased HSIC) needs n >= 4 items; got n={n}")
    if "mknn" in metrics:
        _check_int(k, "k", 1, n - 1, f" (neighbours excluding self, n={n})")
    if csls and set(metrics) & _RETRIEVAL:
        _check_int(csls_k, "csls_k", 1, n, f" (CSLS neighbourhood, n={n})")


def _resolve_mean(mean: MeanLike, t: Tensor, name: str) -> Tensor:
    """The centring vector ``[layer, 1, d]``: ``t``'s own item mean, or a given one."""
    L, _, d = t.shape
    if mean is None:
        return t.mean(dim=1, keepdim=True)
    m = torch.as_tensor(mean).detach().to(device=t.device, dtype=torch.float32)
    if m.dim() == 1 and m.shape[0] == d:
        m = m.expand(L, d)
    if m.dim() == 3 and m.shape[1] == 1:
        m = m[:, 0]
    if tuple(m.shape) != (L, d):
        raise ValueError(
            f"{name} must have shape [d]={d}, [layer, d]=({L}, {d}) or [layer, 1, d]; got "
            f"{tuple(torch.as_tensor(mean).shape)}"
        )
    bad = int((~torch.isfinite(m)).sum())
    if bad:
        raise ValueError(f"{name} contains {bad} non-finite values; expected a finite mean")
    return m.unsqueeze(1)


def clamp_outliers(x: Tensor, clamp: float) -> Tensor:
    """Clip outlier ("massive") coordinates of ``x: [layer, n, d]``.

    Per layer, the scale ``s`` is the median over dimensions of each dimension's RMS over
    items; every coordinate is clipped to ``[-clamp * s, clamp * s]``. A median is used so
    the few massive dimensions that dominate cosine and linear CKA do not set their own
    threshold. Returns a new tensor of the same shape.
    """
    if isinstance(clamp, bool) or not isinstance(clamp, (int, float)) or not math.isfinite(clamp) or clamp <= 0:
        raise ValueError(
            f"clamp must be a positive finite number (multiples of the layer scale) or None; got {clamp!r}"
        )
    rms = x.pow(2).mean(dim=1).sqrt()  # [layer, d]
    scale = rms.median(dim=-1).values
    scale = torch.where(scale > 0, scale, rms.mean(dim=-1))  # mostly-zero layers
    t = (float(clamp) * scale).clamp_min(torch.finfo(torch.float32).tiny)[:, None, None]
    return torch.maximum(torch.minimum(x, t), -t)


def preprocess(
    x: Tensor, *, clamp: float | None = None, center: bool = False, mean: MeanLike = None
) -> Tensor:
    """Optional outlier clamping (:func:`clamp_outliers`) then optional mean-centring.

    ``x: [layer, n, d]``; ``mean: [d] | [layer, d]`` (default: x's own item mean, after
    clamping). Returns fp32 ``[layer, n, d]``.
    """
    x = _as_states(x, "x")
    if clamp is not None:
        x = clamp_outliers(x, clamp)
    if center:
        x = x - _resolve_mean(mean, x, "mean")
    return x


def _unit(t: Tensor, name: str, inplace: bool = False) -> Tensor:
    """Rows of ``t: [..., d]`` scaled to unit length (in place on a temporary if asked)."""
    norm = t.norm(dim=-1, keepdim=True)
    zero = int((norm == 0).sum())
    if zero:
        raise ValueError(
            f"{name} has {zero} zero vectors (items x layers); cosine is undefined for them"
        )
    return t.div_(norm) if inplace else t / norm


# ---------------------------------------------------------------------------------------
# the engine
# ---------------------------------------------------------------------------------------
@dataclass
class _Res:
    """One metric, all layers: value [L], analytic baseline [L], boot [L, B], perm [L, P]."""

    value: Tensor
    baseline: Tensor
    boot: Tensor | None = None
    perm: Tensor | None = None
    ci: Literal["percentile", "normal"] = "percentile"
    bounds: tuple[float, float] = (-math.inf, math.inf)


@dataclass
class _Acc:
    """Accumulates per-chunk tensors of one metric, concatenated over layers at the end."""

    parts: dict[str, list[Tensor]] = field(default_factory=dict)

    def add(self, **kw: Tensor | None) -> None:
        for key, val in kw.items():
            if val is not None:
                self.parts.setdefault(key, []).append(val)

    def get(self, key: str) -> Tensor | None:
        p = self.parts.get(key)
        return None if p is None else torch.cat(p, dim=0)


def _sym_gram(a: Tensor) -> Tensor:
    """``a @ a^T`` for ``a: [c, n, d]`` -> ``[c, n, n]``. The Gram is symmetric, so for large
    n only the upper block triangle is multiplied (3/8 fewer flops at n = 2048) and the
    lower triangle is filled by transposed copies."""
    c, n, _ = a.shape
    bs = 512
    if n < 2 * bs:
        return torch.bmm(a, a.transpose(1, 2))
    g = torch.empty(c, n, n, dtype=a.dtype, device=a.device)
    for s in range(0, n, bs):
        e = min(s + bs, n)
        blk = torch.bmm(a[:, s:e], a[:, s:].transpose(1, 2))  # rows s:e, columns s:
        g[:, s:e, s:] = blk
        if e < n:
            g[:, e:, s:e] = blk[:, :, e - s :].transpose(1, 2)
    return g


def _boot_weights(n: int, n_boot: int, seed: int, device: torch.device) -> Tensor:
    """Bootstrap multiplicities ``[n_boot, n]`` (each row sums to n), deterministic in seed."""
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, n, (n_boot, n), generator=g)
    w = torch.zeros(n_boot, n).scatter_add_(1, idx, torch.ones(n_boot, n))
    return w.to(device)


def _permutations(n: int, n_perm: int, seed: int) -> Tensor:
    """``[n_perm, n]`` random permutations of the items, deterministic in seed."""
    g = torch.Generator().manual_seed(int(seed) + 7919)
    if n_perm == 0:
        return torch.empty(0, n, dtype=torch.long)
    return torch.stack([torch.randperm(n, generator=g) for _ in range(n_perm)])


def _cos_items(
    xn: Tensor, yn: Tensor, perms: Tensor | None
) -> dict[str, tuple[Tensor, Tensor | None]]:
    """Per-item paired / unpaired cosines ``[L, n]`` from unit vectors ``[L, n, d]``, plus
    their means under each permutation ``[L, P]``.

    O(L n d) work, no Gram: the unpaired row sum of cosines is x_i . sum_j unit(y_j).
    """
    n = xn.shape[1]
    paired = torch.einsum("lnd,lnd->ln", xn, yn)
    rows = torch.einsum("lnd,ld->ln", xn, yn.sum(1))  # sum_j cos(x_i, y_j)
    unpaired = (rows - paired) / (n - 1)
    pp = pu = None
    if perms is not None and len(perms):
        ps, us = [], []
        for p in perms:
            pr = torch.einsum("lnd,lnd->ln", xn, yn[:, p])
            ps.append(pr.mean(1))
            us.append(((rows - pr) / (n - 1)).mean(1))
        pp, pu = torch.stack(ps, 1), torch.stack(us, 1)
    return {"paired": (paired, pp), "unpaired": (unpaired, pu)}


def _hsic_terms(
    K: Tensor, Lg: Tensor, Wt: Tensor
) -> dict[str, Tensor]:
    """Weighted sums for biased and unbiased HSIC, for every weight column of ``Wt: [n, B]``.

    ``K, Lg: [c, n, n]`` centred Grams. A weight vector w (item multiplicities) stands for
    the resample that repeats item i w_i times; w = 1 is the sample itself.
    Returns the pieces [c, B] needed by :func:`_hsic_b` and :func:`_hsic_u`.
    """
    w = Wt.unsqueeze(0)  # [1, n, B]
    kd = K.diagonal(dim1=1, dim2=2).unsqueeze(-1)  # [c, n, 1]
    ld = Lg.diagonal(dim1=1, dim2=2).unsqueeze(-1)
    KW = torch.matmul(K, Wt)  # [c, n, B]
    LW = torch.matmul(Lg, Wt)
    tmp = torch.mul(K, Lg)
    S_kl = (torch.matmul(tmp, Wt) * w).sum(1)
    torch.mul(K, K, out=tmp)
    S_kk = (torch.matmul(tmp, Wt) * w).sum(1)
    torch.mul(Lg, Lg, out=tmp)
    S_ll = (torch.matmul(tmp, Wt) * w).sum(1)
    del tmp
    return {"w": w, "kd": kd, "ld": ld, "KW": KW, "LW": LW, "S_kl": S_kl, "S_kk": S_kk, "S_ll": S_ll}


def _hsic_b(n: int, w: Tensor, S: Tensor, RA: Tensor, RB: Tensor) -> Tensor:
    """n^2 x biased HSIC = tr(K H L H) of the (weighted) sample: sum K L - 2/n sum (K1)(L1)
    + (1'K1)(1'L1)/n^2."""
    sA, sB = (w * RA).sum(1), (w * RB).sum(1)
    return S - 2.0 / n * (w * RA * RB).sum(1) + sA * sB / n**2


def _hsic_u(n: int, w: Tensor, S: Tensor, RA: Tensor, RB: Tensor, ad: Tensor, bd: Tensor) -> Tensor:
    """n(n-3) x unbiased HSIC (Song et al. 2012, Thm. 2) with zeroed diagonals:
    tr(K~L~) + (1'K~1)(1'L~1)/((n-1)(n-2)) - 2/(n-2) 1'K~L~1, K~ = K with zero diagonal.
    With weights, pairs of copies of the same item are also "diagonal" and excluded."""
    w2 = w * w
    t1 = S - (w2 * ad * bd).sum(1)
    sA = (w * RA).sum(1) - (w2 * ad).sum(1)
    sB = (w * RB).sum(1) - (w2 * bd).sum(1)
    t3 = (w * (RA - w * ad) * (RB - w * bd)).sum(1)
    return t1 + sA * sB / ((n - 1) * (n - 2)) - 2.0 * t3 / (n - 2)


def _safe_ratio(num: Tensor, da: Tensor, db: Tensor) -> Tensor:
    den = da * db
    out = num / den.clamp_min(torch.finfo(torch.float32).tiny).sqrt()
    return torch.where(den > 0, out, torch.full_like(out, float("nan")))


def _cka_chunk(
    K: Tensor, Lg: Tensor, Wt: Tensor, perms: Tensor | None, want: set[str]
) -> dict[str, tuple[Tensor, Tensor | None, Tensor]]:
    """CKA for a layer chunk: {name: (values [c, B] with column 0 = sample, perm [c, P],
    analytic baseline [c])}."""
    n = K.shape[-1]
    t = _hsic_terms(K, Lg, Wt)
    w, kd, ld, KW, LW = t["w"], t["kd"], t["ld"], t["KW"], t["LW"]
    out: dict[str, tuple[Tensor, Tensor | None, Tensor]] = {}
    # permutations: y's items shuffled -> Lg[p][:, p]; K and its own terms are unchanged.
    kd0, ld0 = kd[..., 0], ld[..., 0]  # [c, n]
    rk, rl = KW[..., 0], LW[..., 0]  # row sums, [c, n]
    one = w[..., :1]
    perm_terms = []
    if perms is not None and len(perms):
        for p in perms:
            Lp = Lg[:, p[:, None], p[None, :]]
            S = torch.einsum("cij,cij->c", K, Lp).unsqueeze(-1)
            perm_terms.append((S, rl[:, p].unsqueeze(-1), ld0[:, p].unsqueeze(-1)))
    if "cka" in want:
        num = _hsic_b(n, w, t["S_kl"], KW, LW)
        dk = _hsic_b(n, w, t["S_kk"], KW, KW)
        dl = _hsic_b(n, w, t["S_ll"], LW, LW)
        vals = _safe_ratio(num, dk, dl)
        pv = None
        if perm_terms:
            pv = torch.cat(
                [
                    _safe_ratio(_hsic_b(n, one, S, rk.unsqueeze(-1), rlp), dk[:, :1], dl[:, :1])
                    for S, rlp, _ in perm_terms
                ],
                dim=1,
            )
        # exact permutation expectation of RV / biased CKA: tr K tr L / (n - 1) (centred Grams)
        base = kd0.sum(1) * ld0.sum(1) / (n - 1) / (dk[:, 0] * dl[:, 0]).clamp_min(1e-30).sqrt()
        out["cka"] = (vals, pv, base)
    if "cka_debiased" in want:
        num = _hsic_u(n, w, t["S_kl"], KW, LW, kd, ld)
        dk = _hsic_u(n, w, t["S_kk"], KW, KW, kd, kd)
        dl = _hsic_u(n, w, t["S_ll"], LW, LW, ld, ld)
        vals = _safe_ratio(num, dk, dl)
        pv = None
        if perm_terms:
            pv = torch.cat(
                [
                    _safe_ratio(_hsic_u(n, one, S, rk.unsqueeze(-1), rlp, kd, ldp), dk[:, :1], dl[:, :1])
                    for S, rlp, ldp in perm_terms
                ],
                dim=1,
            )
        out["cka_debiased"] = (vals, pv, torch.zeros_like(vals[:, 0]))
    return out


def _knn(K: Tensor, xs: Tensor, xcen: Tensor, mu: Tensor, k: int) -> Tensor:
    """Indices ``[c, n, k]`` of each item's k nearest neighbours by cosine, self excluded.

    ``K``: Gram of ``xcen = xs - mu`` (overwritten). The raw Gram of ``xs`` is recovered as
    K + a 1' + 1 a' + |mu|^2 with a_i = (x_i - mu).mu (adding, so no cancellation), then
    columns are scaled by 1/|x_j| (the row's own norm does not change its ranking).
    """
    a = torch.einsum("cnd,cd->cn", xcen, mu[:, 0])  # [c, n]
    mm = mu[:, 0].pow(2).sum(-1)  # [c]
    if float(mm.abs().max()) > 0:
        u = torch.stack([a, torch.ones_like(a)], dim=2)  # [c, n, 2]
        v = torch.stack([torch.ones_like(a), a + mm[:, None]], dim=1)  # [c, 2, n]
        K.baddbmm_(u, v)
    norm = xs.norm(dim=-1)
    zero = int((norm == 0).sum())
    if zero:
        raise ValueError(f"mknn: {zero} zero vectors (items x layers); cosine neighbours are undefined")
    K.mul_((1.0 / norm).unsqueeze(1))
    K.diagonal(dim1=1, dim2=2).fill_(-math.inf)
    return K.topk(k, dim=-1, sorted=False).indices


def _overlap(ix: Tensor, iy: Tensor, n: int) -> Tensor:
    """``|NN_x(i) & NN_y(i)|`` for ``ix, iy: [c, n, k]`` -> ``[c, n]`` (float)."""
    k = ix.shape[-1]
    if k * k <= 256:
        return (ix.unsqueeze(-1) == iy.unsqueeze(-2)).any(-1).sum(-1).float()
    mask = torch.zeros(ix.shape[0], n, n, dtype=torch.bool, device=ix.device)
    mask.scatter_(2, iy, True)
    return mask.gather(2, ix).sum(-1).float()


def _strict_hits(M: Tensor) -> tuple[Tensor, Tensor]:
    """Top-1 hits ``[c, n]`` in both directions for a similarity ``M: [c, n, n]`` (rows x,
    columns y): a hit when the paired entry is strictly above every other entry of its row
    (x->y) / column (y->x). Ties count as misses. ``M`` is restored before returning."""
    diag = M.diagonal(dim1=1, dim2=2).clone()
    M.diagonal(dim1=1, dim2=2).fill_(-math.inf)
    hx = (diag > M.amax(dim=2)).float()
    hy = (diag > M.amax(dim=1)).float()
    M.diagonal(dim1=1, dim2=2).copy_(diag)
    return hx, hy


def _top2(M: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    v = M.topk(2, dim=dim).values
    return v.select(dim, 0), v.select(dim, 1)


def _perm_hits(Mx: Tensor, My: Tensor, perms: Tensor) -> tuple[Tensor, Tensor]:
    """Mean retrieval hit rates ``[c, P]`` with y's items permuted: item i is paired with
    y_{p(i)}. ``Mx`` scores x->y queries (rows), ``My`` y->x queries (columns)."""
    r1, r2 = _top2(Mx, 2)  # [c, n]
    c1, c2 = _top2(My, 1)
    ar = torch.arange(Mx.shape[1], device=Mx.device)
    hx, hy = [], []
    for p in perms:
        vx = Mx[:, ar, p]  # [c, n]: x_i vs its (permuted) partner y_p(i)
        vy = My[:, ar, p]
        hx.append(((vx >= r1) & (r1 > r2)).float().mean(1))
        hy.append(((vy >= c1[:, p]) & (c1[:, p] > c2[:, p])).float().mean(1))
    return torch.stack(hx, 1), torch.stack(hy, 1)


def _evaluate(
    x: Tensor,
    y: Tensor,
    metrics: tuple[str, ...],
    *,
    k: int,
    csls: bool,
    csls_k: int,
    x_mean: MeanLike,
    y_mean: MeanLike,
    boot_w: Tensor | None,
    boot_w_cka: Tensor | None,
    perms: Tensor | None,
    already_centred: bool = False,
) -> dict[str, _Res]:
    """All requested metrics for preprocessed fp32 ``x: [L, n, dx]``, ``y: [L, n, dy]``."""
    L, n, _ = x.shape
    want = set(metrics)
    res: dict[str, _Res] = {}
    zeros = torch.zeros(L, device=x.device)
    has_perm = perms is not None and len(perms) > 0

    def boot_mean(items: Tensor) -> Tensor | None:
        return None if boot_w is None else items @ boot_w.T / n

    # ---- cosine family: O(L n d), no Gram needed -------------------------------------
    need_xy = bool(want & _RETRIEVAL)
    if want & _COS or need_xy:
        xn_all, yn_all = _unit(x, "x"), _unit(y, "y")
    if want & _COS:
        c = _cos_items(xn_all, yn_all, perms)
        (pi, pp), (ui, up) = c["paired"], c["unpaired"]
        if "cos_adjusted" in want:
            adj = pi - ui
            res["cos_adjusted"] = _Res(adj.mean(1), zeros, boot_mean(adj), None if pp is None else pp - up)
        if "cos_paired" in want:
            res["cos_paired"] = _Res(pi.mean(1), ui.mean(1), boot_mean(pi), pp)
        if "cos_unpaired" in want:
            res["cos_unpaired"] = _Res(ui.mean(1), ui.mean(1), boot_mean(ui), up)
    if "cos_centered" in want:
        # if x, y were already centred globally (compare(center=True)), don't centre twice
        if already_centred:
            xc, yc = x, y
        else:
            xc, yc = x - _resolve_mean(x_mean, x, "x_mean"), y - _resolve_mean(y_mean, y, "y_mean")
        fresh = not already_centred  # xc, yc are temporaries: normalise in place
        c = _cos_items(_unit(xc, "centred x", fresh), _unit(yc, "centred y", fresh), perms)
        del xc, yc
        (pi, pp), (ui, up) = c["paired"], c["unpaired"]
        adj = pi - ui
        res["cos_centered"] = _Res(adj.mean(1), zeros, boot_mean(adj), None if pp is None else pp - up)

    # ---- Gram-based metrics, in chunks of layers --------------------------------------
    gram_cka = want & _CKA
    if not (gram_cka or "mknn" in want or need_xy):
        return res
    chunk = max(1, _CHUNK_BYTES // (n * n * 4))
    accs: dict[str, _Acc] = {m: _Acc() for m in metrics}
    if gram_cka:
        ones = torch.ones(n, 1, device=x.device)
        Wt = ones if boot_w_cka is None else torch.cat([ones, boot_w_cka.T], dim=1)
    for s in range(0, L, chunk):
        e = min(s + chunk, L)
        xs, ys = x[s:e], y[s:e]
        if gram_cka or "mknn" in want:
            mx, my = xs.mean(1, keepdim=True), ys.mean(1, keepdim=True)
            xcen, ycen = xs - mx, ys - my
            Kx, Ky = _sym_gram(xcen), _sym_gram(ycen)
            if gram_cka:
                for name, (vals, pv, base) in _cka_chunk(Kx, Ky, Wt, perms, gram_cka).items():
                    bad = ~torch.isfinite(vals[:, 0])
                    if bool(bad.any()):
                        lay = (torch.nonzero(bad).flatten() + s).tolist()
                        raise ValueError(
                            f"{name} is undefined at layers (0-based) {lay}: x or y has (near) zero "
                            "variance over items there (HSIC of a representation with itself <= 0)"
                        )
                    boot = vals[:, 1:] if boot_w_cka is not None else None
                    accs[name].add(value=vals[:, 0], boot=boot, perm=pv, base=base)
            if "mknn" in want:
                ix = _knn(Kx, xs, xcen, mx, k)
                del Kx
                iy = _knn(Ky, ys, ycen, my, k)
                del Ky
                items = _overlap(ix, iy, n) / k
                pv = None
                if has_perm:
                    pv_l = []
                    for p in perms:
                        inv = torch.empty_like(p)
                        inv[p] = torch.arange(n, device=p.device)
                        iyp = inv[iy[:, p]]  # neighbours of y_p(i) in permuted labelling
                        pv_l.append((_overlap(ix, iyp, n) / k).mean(1))
                    pv = torch.stack(pv_l, 1)
                accs["mknn"].add(value=items.mean(1), items=items, perm=pv)
            else:
                del Kx, Ky
        if need_xy:
            C = torch.bmm(xn_all[s:e], yn_all[s:e].transpose(1, 2))  # cos(x_i, y_j)
            if csls:
                rx = C.topk(csls_k, dim=2).values.mean(-1)  # x_i's mean sim. to its y-neighbours
                ry = C.topk(csls_k, dim=1).values.mean(1)  # y_j's mean sim. to its x-neighbours
                # CSLS(i, j) = 2 cos - rx_i - ry_j; the query's own r is constant per query.
                Mx = (2 * C).sub_(ry.unsqueeze(1))
                C.mul_(2).sub_(rx.unsqueeze(2))
                My = C
            else:
                Mx = My = C
            hx, hy = _strict_hits(Mx)
            if My is not Mx:
                _, hy = _strict_hits(My)
            px = py = None
            if has_perm:
                px, py = _perm_hits(Mx, My, perms)
            del C, Mx, My
            for name, items, pv in (
                ("retrieval_top1", (hx + hy) / 2, None if px is None else (px + py) / 2),
                ("retrieval_x2y", hx, px),
                ("retrieval_y2x", hy, py),
            ):
                if name in want:
                    accs[name].add(value=items.mean(1), items=items, perm=pv)

    for name in metrics:
        if name in res:
            continue
        a = accs[name]
        if name in _CKA:
            bounds = (0.0, 1.0) if name == "cka" else (-math.inf, 1.0)
            res[name] = _Res(a.get("value"), a.get("base"), a.get("boot"), a.get("perm"), "normal", bounds)
        else:
            base = torch.full((L,), (k / (n - 1)) if name == "mknn" else 1.0 / n, device=x.device)
            items = a.get("items")
            res[name] = _Res(a.get("value"), base, boot_mean(items), a.get("perm"), "percentile", (0.0, 1.0))
    return res


def _interval(r: _Res, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per layer from the bootstrap distribution ``r.boot: [L, B]``."""
    v = r.value.double().cpu().numpy()
    if r.boot is None or r.boot.shape[1] == 0:
        nan = np.full_like(v, np.nan)
        return nan, nan
    b = r.boot.double().cpu().numpy()
    alpha = (1.0 - ci) / 2.0
    if r.ci == "normal":
        se = np.nanstd(b, axis=1, ddof=1) if b.shape[1] > 1 else np.zeros_like(v)
        se = np.nan_to_num(se, nan=0.0)
        z = NormalDist().inv_cdf(1.0 - alpha)
        lo, hi = v - z * se, v + z * se
    else:
        lo, hi = np.quantile(b, alpha, axis=1), np.quantile(b, 1.0 - alpha, axis=1)
    return np.clip(lo, *r.bounds), np.clip(hi, *r.bounds)


def _labels(layers: Sequence | None, L: int) -> list:
    if layers is None:
        return list(range(L))
    layers = list(layers)
    if len(layers) != L:
        raise ValueError(f"layers must have one label per layer ({L}); got {len(layers)} labels")
    return layers


def _prepare(
    x: object,
    y: object,
    metrics: str | Sequence[str],
    k: int,
    csls: bool,
    csls_k: int,
    clamp: float | None,
    center: bool,
    x_mean: MeanLike,
    y_mean: MeanLike,
) -> tuple[Tensor, Tensor, tuple[str, ...]]:
    metrics = _check_metrics(metrics)
    x, y = _as_states(x, "x"), _as_states(y, "y")
    _check_pair(x, y, metrics)
    _check_n(x.shape[1], metrics, k, bool(csls), csls_k)
    if clamp is not None:
        x, y = clamp_outliers(x, clamp), clamp_outliers(y, clamp)
    if center:
        x = x - _resolve_mean(x_mean, x, "x_mean")
        y = y - _resolve_mean(y_mean, y, "y_mean")
    elif "cos_centered" in metrics:  # validate the given means early
        if x_mean is not None:
            _resolve_mean(x_mean, x, "x_mean")
        if y_mean is not None:
            _resolve_mean(y_mean, y, "y_mean")
    return x, y, metrics


# ---------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------
def compare(
    x: Tensor,
    y: Tensor,
    metrics: str | Sequence[str] = METRICS,
    *,
    k: int = 10,
    csls: bool = False,
    csls_k: int = 10,
    n_boot: int = 200,
    ci: float = 0.95,
    seed: int = 0,
    clamp: float | None = None,
    layers: Sequence | None = None,
    center: bool = False,
    x_mean: MeanLike = None,
    y_mean: MeanLike = None,
    baseline: Literal["analytic", "permutation"] = "analytic",
    n_perm: int = 5,
    n_boot_cka: int | None = None,
) -> pd.DataFrame:
    """Compare paired states layer by layer; one tidy row per (metric, layer).

    Args:
        x, y: ``[layer, n, d]`` states (any float dtype, computed in fp32); ``x[:, i]`` is
            paired with ``y[:, i]``. ``d`` may differ between x and y for ``cka``,
            ``cka_debiased`` and ``mknn`` only.
        metrics: names from :data:`METRICS` (default: all six) and :data:`EXTRA_METRICS`.
        k: neighbours for ``mknn`` (1 <= k < n); chance is k / (n - 1).
        csls, csls_k: retrieve with CSLS (hubness-corrected) instead of raw cosine, using
            csls_k neighbours for each side's mean similarity.
        n_boot, ci, seed: bootstrap resamples over items, interval coverage, RNG seed (the
            table is deterministic given the seed). ``n_boot=0`` disables the CI: ``ci_low``
            and ``ci_high`` are then NaN on purpose.
        n_boot_cka: resamples for the CKA metrics (each recomputes CKA from the Grams);
            default ``min(n_boot, 20)``; interval = value +/- z * bootstrap SE.
        clamp: clip outlier dimensions before everything (see :func:`clamp_outliers`).
        center: subtract the item mean (``x_mean`` / ``y_mean`` if given, ``[d]`` or
            ``[layer, d]``) from x and y before every metric. ``cos_centered`` always
            centres, using ``x_mean`` / ``y_mean`` when given (e.g. fitted on another split,
            so the score does not depend on batch composition).
        layers: labels for the ``layer`` column (default ``0..L-1``).
        baseline: ``"analytic"`` (chance / unpaired value, see module docstring) or
            ``"permutation"``: mean score over ``n_perm`` random item shufflings of y.

    Returns:
        DataFrame with columns ``metric, layer, value, baseline, ci_low, ci_high, n``.

    Raises:
        ValueError: naming the argument, for shape mismatches, n < 2 (n < 4 for
            ``cka_debiased``), k >= n, non-finite inputs, zero vectors and the like.
    """
    n_boot = _check_int(n_boot, "n_boot", 0)
    if not (isinstance(ci, (int, float)) and 0.0 < float(ci) < 1.0):
        raise ValueError(f"ci must be a coverage in (0, 1), e.g. 0.95; got {ci!r}")
    if baseline not in ("analytic", "permutation"):
        raise ValueError(f"baseline must be 'analytic' or 'permutation'; got {baseline!r}")
    n_perm = _check_int(n_perm, "n_perm", 1 if baseline == "permutation" else 0)
    n_boot_cka = min(n_boot, _CKA_BOOT_DEFAULT) if n_boot_cka is None else _check_int(n_boot_cka, "n_boot_cka", 0)
    seed = _check_int(seed, "seed", 0)
    x, y, metrics = _prepare(x, y, metrics, k, csls, csls_k, clamp, center, x_mean, y_mean)
    L, n, _ = x.shape
    labels = _labels(layers, L)
    bw = _boot_weights(n, n_boot, seed, x.device) if n_boot else None
    bwc = bw[:n_boot_cka] if (bw is not None and n_boot_cka <= n_boot) else (
        _boot_weights(n, n_boot_cka, seed, x.device) if n_boot_cka else None
    )
    perms = _permutations(n, n_perm, seed).to(x.device) if baseline == "permutation" else None
    res = _evaluate(
        x, y, metrics, k=k, csls=bool(csls), csls_k=csls_k, x_mean=x_mean, y_mean=y_mean,
        boot_w=bw, boot_w_cka=bwc, perms=perms, already_centred=bool(center),
    )
    frames = []
    for name in metrics:
        r = res[name]
        lo, hi = _interval(r, float(ci))
        base = r.perm.mean(1) if baseline == "permutation" else r.baseline
        frames.append(
            pd.DataFrame(
                {
                    "metric": name,
                    "layer": labels,
                    "value": r.value.double().cpu().numpy(),
                    "baseline": base.double().cpu().numpy(),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": n,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)[list(COLUMNS)]


def permutation_null(
    x: Tensor,
    y: Tensor,
    metrics: str | Sequence[str] = METRICS,
    *,
    n_perm: int = 20,
    seed: int = 0,
    k: int = 10,
    csls: bool = False,
    csls_k: int = 10,
    clamp: float | None = None,
    center: bool = False,
    x_mean: MeanLike = None,
    y_mean: MeanLike = None,
    layers: Sequence | None = None,
) -> pd.DataFrame:
    """Scores of x against y with y's items shuffled: the empirical null, per layer.

    Each permutation is applied to the items of every layer alike (the pairing is what is
    broken, not the layers). Gram matrices are computed once and permuted, not recomputed.
    Returns a long DataFrame ``metric, layer, perm, value`` with ``n_perm`` rows per
    (metric, layer); ``x, y: [layer, n, d]``.
    """
    n_perm = _check_int(n_perm, "n_perm", 1)
    seed = _check_int(seed, "seed", 0)
    x, y, metrics = _prepare(x, y, metrics, k, csls, csls_k, clamp, center, x_mean, y_mean)
    L, n, _ = x.shape
    labels = _labels(layers, L)
    perms = _permutations(n, n_perm, seed).to(x.device)
    res = _evaluate(
        x, y, metrics, k=k, csls=bool(csls), csls_k=csls_k, x_mean=x_mean, y_mean=y_mean,
        boot_w=None, boot_w_cka=None, perms=perms, already_centred=bool(center),
    )
    frames = []
    for name in metrics:
        pv = res[name].perm.double().cpu().numpy()  # [L, P]
        frames.append(
            pd.DataFrame(
                {
                    "metric": name,
                    "layer": np.repeat(np.asarray(labels, dtype=object), n_perm),
                    "perm": np.tile(np.arange(n_perm), L),
                    "value": pv.reshape(-1),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class MaxOverLayersNull:
    """Null for a score maximised over layers (the null is maximised the same way).

    Attributes:
        metric: metric name.
        observed: max over layers of the observed score.
        observed_layer: label of the layer attaining it.
        null: ``[n_perm]`` max over layers of the score under each item permutation.
        per_layer_null_mean: ``[layer]`` mean permutation score at each layer.
        p_value: (1 + #{null >= observed}) / (1 + n_perm).
    """

    metric: str
    observed: float
    observed_layer: object
    null: np.ndarray
    per_layer_null_mean: np.ndarray
    p_value: float


def max_over_layers_null(
    x: Tensor,
    y: Tensor,
    metric: str = "cos_adjusted",
    *,
    n_perm: int = 100,
    seed: int = 0,
    k: int = 10,
    csls: bool = False,
    csls_k: int = 10,
    clamp: float | None = None,
    center: bool = False,
    x_mean: MeanLike = None,
    y_mean: MeanLike = None,
    layers: Sequence | None = None,
) -> MaxOverLayersNull:
    """Permutation null of ``max_layer score(layer)`` for one metric.

    Picking the best layer inflates a score; comparing that maximum with a per-layer null is
    biased. Here each permutation of the items (shared by all layers) gives one null
    maximum over layers. ``x, y: [layer, n, d]``.
    """
    if not isinstance(metric, str):
        raise ValueError(f"metric must be a single metric name; got {metric!r}")
    n_perm = _check_int(n_perm, "n_perm", 1)
    seed = _check_int(seed, "seed", 0)
    x, y, metrics = _prepare(x, y, metric, k, csls, csls_k, clamp, center, x_mean, y_mean)
    L, n, _ = x.shape
    labels = _labels(layers, L)
    perms = _permutations(n, n_perm, seed).to(x.device)
    r = _evaluate(
        x, y, metrics, k=k, csls=bool(csls), csls_k=csls_k, x_mean=x_mean, y_mean=y_mean,
        boot_w=None, boot_w_cka=None, perms=perms, already_centred=bool(center),
    )[metric]
    value = r.value.double().cpu().numpy()
    pv = r.perm.double().cpu().numpy()  # [L, P]
    null = pv.max(axis=0)
    best = int(np.argmax(value))
    return MaxOverLayersNull(
        metric=metric,
        observed=float(value[best]),
        observed_layer=labels[best],
        null=null,
        per_layer_null_mean=pv.mean(axis=1),
        p_value=float((1 + np.sum(null >= value[best])) / (1 + n_perm)),
    )


# ---------------------------------------------------------------------------------------
# one-metric helpers: Tensor[layer] of values
# ---------------------------------------------------------------------------------------
def _values(x: Tensor, y: Tensor, metric: str, **kw) -> Tensor:
    k, csls, csls_k = kw.pop("k", 10), kw.pop("csls", False), kw.pop("csls_k", 10)
    x_mean, y_mean = kw.pop("x_mean", None), kw.pop("y_mean", None)
    x, y, metrics = _prepare(x, y, metric, k, csls, csls_k, None, False, x_mean, y_mean)
    r = _evaluate(
        x, y, metrics, k=k, csls=bool(csls), csls_k=csls_k, x_mean=x_mean, y_mean=y_mean,
        boot_w=None, boot_w_cka=None, perms=None,
    )
    return r[metric].value


def cos_paired(x: Tensor, y: Tensor) -> Tensor:
    """mean_i cos(x_i, y_i) per layer; ``[layer, n, d] -> [layer]``. Raw: mind anisotropy."""
    return _values(x, y, "cos_paired")


def cos_unpaired(x: Tensor, y: Tensor) -> Tensor:
    """mean_{i != j} cos(x_i, y_j) per layer; ``[layer, n, d] -> [layer]``."""
    return _values(x, y, "cos_unpaired")


def cos_adjusted(x: Tensor, y: Tensor) -> Tensor:
    """Paired minus unpaired mean cosine (Wu et al. 2024, Eq. 1); ``-> [layer]``, chance 0."""
    return _values(x, y, "cos_adjusted")


def cos_centered(x: Tensor, y: Tensor, *, x_mean: MeanLike = None, y_mean: MeanLike = None) -> Tensor:
    """:func:`cos_adjusted` after centring x and y (own means, or given ``[d]``/``[layer, d]``)."""
    return _values(x, y, "cos_centered", x_mean=x_mean, y_mean=y_mean)


def cka(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA with the biased HSIC, tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)), K = x x^T.

    ``x: [layer, n, dx]``, ``y: [layer, n, dy]`` -> ``[layer]``. Equals the RV coefficient;
    inflated when d >> n (prefer :func:`cka_debiased` there).
    """
    return _values(x, y, "cka")


def cka_debiased(x: Tensor, y: Tensor) -> Tensor:
    """Linear CKA with the unbiased HSIC estimator (Song et al. 2012; Nguyen et al. 2021).

    HSIC_u(K, L) = [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)),
    K~ = centred Gram with zero diagonal; CKA = HSIC_u(K,L) / sqrt(HSIC_u(K,K) HSIC_u(L,L)).
    Near 0 for independent inputs even when d >> n. Needs n >= 4. ``-> [layer]``.
    """
    return _values(x, y, "cka_debiased")


def mknn(x: Tensor, y: Tensor, *, k: int = 10) -> Tensor:
    """Mutual k-NN alignment (Huh et al. 2024): rows L2-normalised, k nearest neighbours by
    inner product (self excluded) within x and within y; mean_i |NN_x(i) & NN_y(i)| / k.
    Chance ~ k / (n - 1). ``-> [layer]``."""
    return _values(x, y, "mknn", k=k)


def retrieval_top1(
    x: Tensor,
    y: Tensor,
    *,
    csls: bool = False,
    csls_k: int = 10,
    direction: Literal["both", "x2y", "y2x"] = "both",
) -> Tensor:
    """Top-1 retrieval accuracy by cosine (or CSLS) per layer; chance 1/n. ``-> [layer]``.

    ``both`` is the mean of x->y (query x_i, is y_i the best candidate?) and y->x. A hit
    needs the partner strictly above all other candidates (ties are misses).
    CSLS(i, j) = 2 cos(x_i, y_j) - r_x(i) - r_y(j), r = mean cosine to the csls_k nearest
    candidates on the other side: penalises "hub" vectors close to everything.
    """
    name = {"both": "retrieval_top1", "x2y": "retrieval_x2y", "y2x": "retrieval_y2x"}.get(direction)
    if name is None:
        raise ValueError(f"direction must be 'both', 'x2y' or 'y2x'; got {direction!r}")
    return _values(x, y, name, csls=csls, csls_k=csls_k)
