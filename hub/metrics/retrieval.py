"""Top-1 retrieval accuracy by cosine or CSLS (Conneau et al. 2018), x->y, y->x and both.

A hit needs the partner strictly above all other candidates (ties are misses). CSLS(i, j) =
2 cos(x_i, y_j) - r_x(i) - r_y(j), r = mean cosine to the csls_k nearest candidates on the
other side: it penalises "hub" vectors close to everything. The query's own r is constant
per query, so x->y ranks 2 cos - r_y(j) along a row and y->x ranks 2 cos - r_x(i) along a
column. Means of per-item hits: their CIs bootstrap the items.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from hub.metrics.registry import Metric, register
from hub.metrics.shared import Chunk, Part


def strict_hits(M: Tensor) -> tuple[Tensor, Tensor]:
    """Top-1 hits ``[c, n]`` in both directions for a similarity ``M: [c, n, n]`` (rows x,
    columns y): a hit when the paired entry is strictly above every other entry of its row
    (x->y) / column (y->x). Ties count as misses. ``M`` is restored before returning."""
    diag = M.diagonal(dim1=1, dim2=2).clone()
    M.diagonal(dim1=1, dim2=2).fill_(-math.inf)
    hx = (diag > M.amax(dim=2)).float()
    hy = (diag > M.amax(dim=1)).float()
    M.diagonal(dim1=1, dim2=2).copy_(diag)
    return hx, hy


def top2(M: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    v = M.topk(2, dim=dim).values
    return v.select(dim, 0), v.select(dim, 1)


def perm_hits(Mx: Tensor, My: Tensor, perms: Tensor) -> tuple[Tensor, Tensor]:
    """Mean retrieval hit rates ``[c, P]`` with y's items permuted: item i is paired with
    y_{p(i)}. ``Mx`` scores x->y queries (rows), ``My`` y->x queries (columns)."""
    r1, r2 = top2(Mx, 2)  # [c, n]
    c1, c2 = top2(My, 1)
    ar = torch.arange(Mx.shape[1], device=Mx.device)
    hx, hy = [], []
    for p in perms:
        vx = Mx[:, ar, p]  # [c, n]: x_i vs its (permuted) partner y_p(i)
        vy = My[:, ar, p]
        hx.append(((vx >= r1) & (r1 > r2)).float().mean(1))
        hy.append(((vy >= c1[:, p]) & (c1[:, p] > c2[:, p])).float().mean(1))
    return torch.stack(hx, 1), torch.stack(hy, 1)




def csls_scores(C: Tensor, csls_k: int) -> tuple[Tensor, Tensor]:
    """(Mx, My) ``[c, n, n]``: the CSLS scores that rank y-candidates for x-queries (rows) and
    x-candidates for y-queries (columns), from the cross cosine ``C`` (overwritten)."""
    rx = C.topk(csls_k, dim=2).values.mean(-1)  # x_i's mean sim. to its y-neighbours
    ry = C.topk(csls_k, dim=1).values.mean(1)  # y_j's mean sim. to its x-neighbours
    Mx = (2 * C).sub_(ry.unsqueeze(1))
    My = C.mul_(2).sub_(rx.unsqueeze(2))
    return Mx, My


def _family(ch: Chunk) -> dict[str, Part]:
    def make() -> dict[str, Part]:
        o = ch.opts
        C = ch.cross()
        del ch.memo["cross"]  # CSLS overwrites it below: no other metric may read it
        Mx, My = csls_scores(C, o.csls_k) if o.csls else (C, C)
        hx, hy = strict_hits(Mx)
        if My is not Mx:
            _, hy = strict_hits(My)
        px = py = None
        if o.perms is not None and len(o.perms):
            px, py = perm_hits(Mx, My, o.perms)
        both = (hx + hy) / 2
        return {
            "retrieval_top1": Part(both.mean(1), items=both, perm=None if px is None else (px + py) / 2),
            "retrieval_x2y": Part(hx.mean(1), items=hx, perm=px),
            "retrieval_y2x": Part(hy.mean(1), items=hy, perm=py),
        }
    return ch.cached("retrieval", make)  # type: ignore[return-value]


_INV = frozenset({"orthogonal", "isotropic_scale", "item_scale", "item_permutation"})
for _name, _what, _label in (
    ("retrieval_top1", "mean of x->y and y->x", "top-1 retrieval (both directions)"),
    ("retrieval_x2y", "queries x, candidates y", "top-1 retrieval, x → y"),
    ("retrieval_y2x", "queries y, candidates x", "top-1 retrieval, y → x"),
):
    register(Metric(
        _name, "retrieval", f"top-1 retrieval accuracy by cosine or CSLS, {_what}", "1 / n",
        lambda n, k: 1.0 / n, (0.0, 1.0), _INV, (lambda nm: lambda ch: _family(ch)[nm])(_name),
        needs=frozenset({"cross"}), same_width=True, default=_name == "retrieval_top1", label=_label,
    ))
