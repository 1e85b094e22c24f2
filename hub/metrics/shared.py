"""What the metrics share: one chunk of layers and the quantities computed once for it.

The comparator's cost rests on three fp32 ``n x n`` matrices per layer: the centred Grams
x x^T and y y^T (CKA, k-NN, RSA, Procrustes norms ...) and the cross cosine x y^T
(retrieval). A :class:`Chunk` computes each on first use and hands the same tensor to every
metric that asks, so a metric added to the registry costs only its own extra work.

The centred Gram is turned *in place* into the cosine Gram for k-NN (no second n x n
buffer), which is why the engine evaluates metrics in :func:`hub.metrics.registry.stage`
order: centred-Gram users first. The big per-chunk tensors (Grams, cross cosine, centred and
unit rows) live in workspace buffers that every chunk of one call reuses (:meth:`Chunk.buffer`):
allocating them afresh per chunk cost ~10% of the comparator's time in page faults.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class Part:
    """One metric's result for a chunk of ``c`` layers.

    value ``[c]``; items ``[c, n]`` per-item scores whose mean is the value (bootstrapped by
    resampling items: percentile CI); boot ``[c, B]`` the metric recomputed on resampled
    items (normal CI); perm ``[c, P]`` scores under item permutations of y; baseline ``[c]``
    when the metric computes a data-dependent analytic baseline itself.
    """

    value: Tensor
    items: Tensor | None = None
    boot: Tensor | None = None
    perm: Tensor | None = None
    baseline: Tensor | None = None


@dataclass
class Options:
    """Settings shared by every chunk (see :func:`hub.metrics.api.compare`)."""

    k: int = 10
    csls: bool = False
    csls_k: int = 10
    want: frozenset[str] = frozenset()
    boot_w_cka: Tensor | None = None  # [B, n] multiplicities for recomputed (normal-CI) metrics
    perms: Tensor | None = None  # [P, n] requested permutations (permutation baseline / null)
    null_perms: Tensor | None = None  # perms, or default ones for metrics without analytic chance
    x_mean: Tensor | None = None  # [L, 1, d] centring for cos_centered (None: already centred)
    y_mean: Tensor | None = None
    own_mean: bool = False  # cos_centered centres each side by its own item mean (Chunk.centred)


def sym_gram(a: Tensor, bs: int = 512, tile: int = 128, out: Tensor | None = None) -> Tensor:
    """``a @ a^T`` for ``a: [c, n, d]`` -> ``[c, n, n]``. The Gram is symmetric, so for large
    n only the upper block triangle is multiplied (3/8 fewer flops at n = 2048); the lower
    triangle is filled with transposed copies, tile by tile (a tile stays in cache; one big
    strided transpose does not). The values equal a full ``bmm``'s. ``out``: a contiguous
    ``[c, n, n]`` buffer to write into (reused across chunks: no fresh pages to fault in)."""
    c, n, _ = a.shape
    if n < 2 * bs:
        return torch.bmm(a, a.transpose(1, 2), out=out)
    g = torch.empty(c, n, n, dtype=a.dtype, device=a.device) if out is None else out
    for s in range(0, n, bs):
        e = min(s + bs, n)
        torch.bmm(a[:, s:e], a[:, s:].transpose(1, 2), out=g[:, s:e, s:])  # rows s:e, columns s:, in place
    for i in range(bs, n, tile):  # below the diagonal blocks: rows i:i+tile, columns left of i's block
        for j in range(0, (i // bs) * bs, tile):
            g[:, i : i + tile, j : j + tile] = g[:, j : j + tile, i : i + tile].transpose(1, 2)
    return g


def topk_indices(M: Tensor, k: int) -> Tensor:
    """Column indices ``[c, n, k]`` of the k largest entries of each row of ``M: [c, n, m]``
    (unordered; the same set as ``M.topk(k)`` up to ties).

    Exact and cheaper than a full top-k for long rows: the columns are split into groups of
    ``gs``; the k largest entries lie in the k groups with the largest maxima (an entry
    in any other group has k group maxima, k distinct entries, at least as large), so the
    top-k runs on k * gs candidates instead of m.
    """
    c, n, m = M.shape
    gs = next((g for g in (16, 8) if m % g == 0 and m // g >= 4 * k), None)
    if gs is None:
        return M.topk(k, dim=-1, sorted=False).indices
    G = m // gs  # group g holds the columns g, g + G, g + 2G, ... (a strided max vectorises well)
    gmax = M.view(c, n, gs, G).amax(2)  # [c, n, G]
    groups = gmax.topk(k, dim=-1, sorted=False).indices  # [c, n, k]
    cols = (groups.unsqueeze(-1) + G * torch.arange(gs, device=M.device)).view(c, n, k * gs)
    best = M.gather(2, cols).topk(k, dim=-1, sorted=False).indices
    return cols.gather(2, best)


@dataclass
class Chunk:
    """Layers ``s:e`` of x and y with their shared quantities, each computed on first use.

    ``x, y: [L, n, d]`` fp32 (preprocessed); ``xn, yn``: their row lengths ``[L, n, 1]`` (or
    None when no metric needs unit rows). Metrics read ``xs, ys`` (this chunk, ``[c, n, d]``) and call
    :meth:`unit`, :meth:`gram`, :meth:`knn`, :meth:`cos_gram`, :meth:`cross`, :meth:`cached`.
    """

    x: Tensor
    y: Tensor
    xn: Tensor | None
    yn: Tensor | None
    s: int
    e: int
    opts: Options
    memo: dict[str, object] = field(default_factory=dict)
    ws: dict[str, Tensor] = field(default_factory=dict)  # [chunk, n, n] buffers shared by the chunks of one run

    @property
    def n(self) -> int:
        return self.x.shape[1]

    @property
    def xs(self) -> Tensor:
        return self.x[self.s : self.e]

    @property
    def ys(self) -> Tensor:
        return self.y[self.s : self.e]

    def buffer(self, key: str, width: int | None = None) -> Tensor:
        """A ``[c, n, width or n]`` buffer of the run's workspace, allocated once and reused by
        every chunk: a fresh tensor of tens of MiB costs page faults and zeroing (~0.02 s per
        64 MiB on the CPU), about 10% of the comparator's time when paid per chunk."""
        c, n = self.e - self.s, self.n
        w = n if width is None else width
        buf = self.ws.get(key)
        if buf is None or buf.shape[0] < c or buf.shape[2] != w:
            buf = self.ws[key] = torch.empty(c, n, w, dtype=self.x.dtype, device=self.x.device)
        return buf[:c]

    def cached(self, key: str, fn: Callable[[], object]) -> object:
        """``fn()`` computed once per chunk under ``key`` (shared by metrics of one family)."""
        if key not in self.memo:
            self.memo[key] = fn()
        return self.memo[key]

    def unit(self, side: str) -> Tensor:
        """Unit rows ``[c, n, d]`` of this chunk's x or y."""
        def make() -> Tensor:
            t, norm = (self.xs, self.xn) if side == "x" else (self.ys, self.yn)
            return torch.div(t, norm[self.s : self.e], out=self.buffer("unit_" + side, t.shape[2]))
        return self.cached("unit_" + side, make)  # type: ignore[return-value]

    def centred(self, side: str) -> tuple[Tensor, Tensor]:
        """(item mean ``[c, 1, d]``, centred states ``[c, n, d]``) of side ``x`` or ``y``."""
        def make() -> tuple[Tensor, Tensor]:
            t = self.xs if side == "x" else self.ys
            mu = t.mean(1, keepdim=True)
            return mu, torch.sub(t, mu, out=self.buffer("centred_" + side, t.shape[2]))
        return self.cached("centred_" + side, make)  # type: ignore[return-value]

    def gram(self, side: str) -> Tensor:
        """Centred Gram ``[c, n, n]`` of side ``x`` or ``y`` (read-only for metrics)."""
        if self.memo.get("consumed_" + side):
            raise RuntimeError(
                f"the centred Gram of {side} was already turned into its cosine Gram; metrics that "
                "need 'gram' must be evaluated first (registry.stage)"
            )
        return self.cached(  # type: ignore[return-value]
            "gram_" + side, lambda: sym_gram(self.centred(side)[1], out=self.buffer("gram_" + side))
        )

    def knn(self, side: str) -> Tensor:
        """Indices ``[c, n, k]`` of each item's k nearest neighbours by cosine, self excluded.

        Turns the centred Gram into the raw Gram K + a 1' + 1 a' + |mu|^2, a_i = (x_i - mu).mu
        (adding, so no cancellation), scales columns by 1/|x_j| (a row's own norm does not
        change its ranking) and sets the diagonal to -inf, in place.
        """
        def make() -> Tensor:
            K = self.gram(side)
            mu, cen = self.centred(side)
            t = self.xs if side == "x" else self.ys
            a = torch.einsum("cnd,cd->cn", cen, mu[:, 0])  # [c, n]
            mm = mu[:, 0].pow(2).sum(-1)  # [c]
            if float(mm.abs().max()) > 0:
                u = torch.stack([a, torch.ones_like(a)], dim=2)  # [c, n, 2]
                v = torch.stack([torch.ones_like(a), a + mm[:, None]], dim=1)  # [c, 2, n]
                K.baddbmm_(u, v)
            norm = t.norm(dim=-1)
            zero = int((norm == 0).sum())
            if zero:
                raise ValueError(f"k-NN: {zero} zero vectors (items x layers); cosine neighbours are undefined")
            K.mul_((1.0 / norm).unsqueeze(1))
            K.diagonal(dim1=1, dim2=2).fill_(-math.inf)
            self.memo["norm_" + side] = norm
            self.memo["consumed_" + side] = True  # the centred Gram is gone from here on
            return topk_indices(K, self.opts.k)
        return self.cached("knn_" + side, make)  # type: ignore[return-value]

    def cos_gram(self, side: str) -> Tensor:
        """Cosine Gram ``[c, n, n]`` (diagonal -inf: self excluded), after :meth:`knn`."""
        if "cos_" + side not in self.memo:
            self.knn(side)
            K = self.memo["gram_" + side]
            K.mul_((1.0 / self.memo["norm_" + side]).unsqueeze(2))  # type: ignore[union-attr]
            self.memo["cos_" + side] = K
        return self.memo["cos_" + side]  # type: ignore[return-value]

    def cross(self) -> Tensor:
        """Cross cosine ``[c, n, n]``: cos(x_i, y_j) (read-only for metrics)."""
        def make() -> Tensor:
            # the x Gram's buffer once the Grams are released (stage order), else its own
            key = "cross" if "gram_x" in self.memo else "gram_x"
            return torch.bmm(self.unit("x"), self.unit("y").transpose(1, 2), out=self.buffer(key))
        return self.cached("cross", make)  # type: ignore[return-value]

    def release_grams(self) -> None:
        """Drop the n x n self-Grams (before the cross matrix is built: lower peak memory)."""
        for key in ("gram_x", "gram_y", "cos_x", "cos_y"):
            self.memo.pop(key, None)
