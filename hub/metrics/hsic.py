"""Linear CKA from the centred Grams: biased HSIC (Kornblith et al. 2019, = the RV
coefficient) and the unbiased HSIC estimator (Song et al. 2012; Nguyen et al. 2021).

CKA is not a mean of per-item scores: each bootstrap resample recomputes it *exactly* from
the Grams (item i weighted by its multiplicity, which equals indexing the Gram with the
resampled items; for the debiased form, pairs of copies of one item count as the excluded
diagonal). The biased baseline is the exact permutation mean tr(K) tr(L) / ((n - 1)
||K||_F ||L||_F) (Kazi-Aoual et al. 1995); the debiased numerator has permutation mean 0.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hub.metrics.registry import Metric, register
from hub.metrics.shared import Chunk, Part


ROWS = 128  # row block of the HSIC sums: a [ROWS, n] slice of K, L and K*L stays in cache


def _hsic_terms(
    K: Tensor, Lg: Tensor, Wt: Tensor
) -> dict[str, Tensor]:
    """Weighted sums for biased and unbiased HSIC, for every weight column of ``Wt: [n, B]``.

    ``K, Lg: [c, n, n]`` centred Grams. A weight vector w (item multiplicities) stands for
    the resample that repeats item i w_i times; w = 1 is the sample itself.
    Returns the pieces [c, B] needed by :func:`_hsic_b` and :func:`_hsic_u`.

    One pass over the Grams, a block of ``ROWS`` rows of one layer at a time (the products
    stay in cache instead of three [c, n, n] temporaries). The quadratic forms w'(K*L)w,
    w'(K*K)w, w'(L*L)w read only the upper block triangle (they are symmetric): twice the
    blocks right of the diagonal block plus the diagonal block once.
    """
    c, n, _ = K.shape
    B = Wt.shape[1]
    w = Wt.unsqueeze(0)  # [1, n, B]
    kd = K.diagonal(dim1=1, dim2=2).unsqueeze(-1)  # [c, n, 1]
    ld = Lg.diagonal(dim1=1, dim2=2).unsqueeze(-1)
    KW = torch.empty(c, n, B, dtype=K.dtype, device=K.device)  # K w, all rows
    LW = torch.empty_like(KW)
    S = torch.zeros(3, c, B, dtype=torch.float64, device=K.device)  # sums of many blocks: fp64
    tmp = torch.empty(min(ROWS, n), n, dtype=K.dtype, device=K.device)
    for layer in range(c):
        for r in range(0, n, ROWS):
            e = min(r + ROWS, n)
            kb, lb = K[layer, r:e], Lg[layer, r:e]  # [rows, n]
            torch.mm(kb, Wt, out=KW[layer, r:e])
            torch.mm(lb, Wt, out=LW[layer, r:e])
            wr = Wt[r:e]
            for i, (a, b) in enumerate(((kb, lb), (kb, kb), (lb, lb))):
                t = torch.mul(a[:, r:], b[:, r:], out=tmp[: e - r, : n - r])  # upper part of rows r:e
                right = (t[:, e - r:] @ Wt[e:]) * wr  # blocks right of the diagonal: twice
                diag = (t[:, : e - r] @ wr) * wr  # the diagonal block: once
                S[i, layer] += (2.0 * right.sum(0, dtype=torch.float64) + diag.sum(0, dtype=torch.float64))
    S = S.to(K.dtype)
    return {"w": w, "kd": kd, "ld": ld, "KW": KW, "LW": LW, "S_kl": S[0], "S_kk": S[1], "S_ll": S[2]}


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


# A self-HSIC at or below this fraction of sum(K * K) is float noise (fp32 leaves ~1e-7 of it
# where the exact value is 0), so CKA is 0/0 there: undefined, NaN. Exactly 0 happens for the
# unbiased HSIC when all items but one share a state (no two disjoint pairs of distinct items).
REL_TOL = 1e-5


def _safe_ratio(num: Tensor, da: Tensor, db: Tensor, sa: Tensor, sb: Tensor) -> Tensor:
    """num / sqrt(da db); NaN where a self-HSIC ``da, db`` is <= REL_TOL of its ``sum K^2`` (``sa, sb``)."""
    ok = (da > REL_TOL * sa) & (db > REL_TOL * sb)
    out = num / (da * db).clamp_min(torch.finfo(torch.float32).tiny).sqrt()
    return torch.where(ok, out, torch.full_like(out, float("nan")))


def cka_chunk(
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
    s0 = (t["S_kk"][:, :1], t["S_ll"][:, :1])
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
        vals = _safe_ratio(num, dk, dl, t["S_kk"], t["S_ll"])
        pv = None
        if perm_terms:
            pv = torch.cat(
                [
                    _safe_ratio(_hsic_b(n, one, S, rk.unsqueeze(-1), rlp), dk[:, :1], dl[:, :1], *s0)
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
        vals = _safe_ratio(num, dk, dl, t["S_kk"], t["S_ll"])
        pv = None
        if perm_terms:
            pv = torch.cat(
                [
                    _safe_ratio(_hsic_u(n, one, S, rk.unsqueeze(-1), rlp, kd, ldp), dk[:, :1], dl[:, :1], *s0)
                    for S, rlp, ldp in perm_terms
                ],
                dim=1,
            )
        out["cka_debiased"] = (vals, pv, torch.zeros_like(vals[:, 0]))
    return out


def _family(ch: Chunk) -> dict[str, Part]:
    """Both CKAs of the chunk from one set of HSIC terms (only the requested ones)."""
    def make() -> dict[str, Part]:
        o = ch.opts
        n = ch.n
        ones = torch.ones(n, 1, device=ch.x.device)
        Wt = ones if o.boot_w_cka is None else torch.cat([ones, o.boot_w_cka.T], dim=1)
        want = {m for m in ("cka", "cka_debiased") if m in o.want}
        out = {}
        for name, (vals, pv, base) in cka_chunk(ch.gram("x"), ch.gram("y"), Wt, o.perms, want).items():
            boot = vals[:, 1:] if o.boot_w_cka is not None else None
            out[name] = Part(vals[:, 0], boot=boot, perm=pv, baseline=base)
        return out
    return ch.cached("cka", make)  # type: ignore[return-value]


_INV = frozenset({"orthogonal", "orthogonal_each", "isotropic_scale", "translation", "item_permutation"})
register(Metric(
    "cka", "cka", "linear CKA, biased HSIC (Kornblith et al. 2019) = the RV coefficient",
    "exact permutation mean tr K tr L / ((n-1) |K| |L|)", None, (0.0, 1.0), _INV,
    lambda ch: _family(ch)["cka"], needs=frozenset({"gram"}), ci="normal", default=True,
    undefined="x or y has (near) zero variance over items there (its HSIC with itself is ~0)",
    label="linear CKA (biased HSIC)",
))
register(Metric(
    "cka_debiased", "cka", "linear CKA from the unbiased HSIC (Song et al. 2012; Nguyen et al. 2021)",
    "0", None, (float("-inf"), 1.0), _INV, lambda ch: _family(ch)["cka_debiased"],
    needs=frozenset({"gram"}), min_n=4, ci="normal", default=True,
    undefined=("the unbiased HSIC of x or y with itself is ~0 there (e.g. all items but one share one state, "
               "or zero variance)"),
    label="linear CKA (unbiased HSIC)",
))
