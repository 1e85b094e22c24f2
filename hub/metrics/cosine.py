"""The cosine family: paired, unpaired, adjusted (Wu et al. 2024) and centred cosine.

O(L n d), no Gram: the unpaired row sum of cosines is x_i . sum_j unit(y_j). All four are
means of per-item scores, so their CIs bootstrap the items' scores.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hub.metrics.inputs import row_norms, unit
from hub.metrics.registry import Metric, register
from hub.metrics.shared import Chunk, Part


def cos_items(xn: Tensor, yn: Tensor, perms: Tensor | None) -> dict[str, tuple[Tensor, Tensor | None]]:
    """Per-item paired / unpaired cosines ``[c, n]`` from unit rows ``[c, n, d]``, plus their
    means under each permutation of y's items ``[c, P]``."""
    n = xn.shape[1]
    paired = torch.linalg.vecdot(xn, yn)  # no [c, n, d] temporary
    rows = (xn @ yn.sum(1).unsqueeze(-1)).squeeze(-1)  # sum_j cos(x_i, y_j)
    unpaired = (rows - paired) / (n - 1)
    pp = pu = None
    if perms is not None and len(perms):
        ps, us = [], []
        for p in perms:
            pr = torch.linalg.vecdot(xn, yn[:, p])
            ps.append(pr.mean(1))
            us.append(((rows - pr) / (n - 1)).mean(1))
        pp, pu = torch.stack(ps, 1), torch.stack(us, 1)
    return {"paired": (paired, pp), "unpaired": (unpaired, pu)}


def _raw(ch: Chunk) -> dict[str, tuple[Tensor, Tensor | None]]:
    return ch.cached("cos", lambda: cos_items(ch.unit("x"), ch.unit("y"), ch.opts.perms))


def _adjusted(c: dict[str, tuple[Tensor, Tensor | None]]) -> Part:
    (pi, pp), (ui, up) = c["paired"], c["unpaired"]
    adj = pi - ui
    return Part(adj.mean(1), items=adj, perm=None if pp is None else pp - up, baseline=torch.zeros_like(adj[:, 0]))


def _paired(ch: Chunk) -> Part:
    (pi, pp), (ui, _) = _raw(ch)["paired"], _raw(ch)["unpaired"]
    return Part(pi.mean(1), items=pi, perm=pp, baseline=ui.mean(1))


def _unpaired(ch: Chunk) -> Part:
    ui, up = _raw(ch)["unpaired"]
    return Part(ui.mean(1), items=ui, perm=up, baseline=ui.mean(1))


def _unit_into(ch: Chunk, side: str) -> Tensor:
    """Unit rows of the chunk's centred ``side``, written into a workspace buffer."""
    cen = ch.centred(side)[1]
    return torch.div(cen, row_norms(cen, f"centred {side}"), out=ch.buffer("cunit_" + side, cen.shape[2]))


def _centered(ch: Chunk) -> Part:
    o = ch.opts
    if o.own_mean:  # each side's own item mean: the chunk's centred states (shared with the Grams)
        xc, yc = (_unit_into(ch, side) for side in ("x", "y"))
    elif o.x_mean is None:  # x, y were centred globally (compare(center=True)): don't centre twice
        xc, yc = unit(ch.xs, "centred x"), unit(ch.ys, "centred y")
    else:  # temporaries: normalise in place
        xc = unit(ch.xs - o.x_mean[ch.s : ch.e], "centred x", True)
        yc = unit(ch.ys - o.y_mean[ch.s : ch.e], "centred y", True)
    return _adjusted(cos_items(xc, yc, o.perms))


_COS_INV = frozenset({"orthogonal", "isotropic_scale", "item_scale", "item_permutation"})
register(Metric(
    "cos_adjusted", "cosine", "mean_i cos(x_i, y_i) - mean_{i!=j} cos(x_i, y_j) (Wu et al. 2024, Eq. 1)",
    "0 (paired minus unpaired)", None, (-2.0, 2.0), _COS_INV, lambda ch: _adjusted(_raw(ch)),
    needs=frozenset({"unit"}), same_width=True, default=True,
    label="cosine, paired − unpaired",
))
register(Metric(
    "cos_centered", "cosine", "cos_adjusted after centring x and y (own means or given x_mean / y_mean)",
    "0", None, (-2.0, 2.0), frozenset({"orthogonal", "isotropic_scale", "translation", "item_permutation"}),
    _centered, needs=frozenset(), same_width=True, default=True,
    label="cosine after mean-centering, paired − unpaired",
))
register(Metric(
    "cos_paired", "cosine", "mean_i cos(x_i, y_i) (raw: mind anisotropy)", "the unpaired mean cosine",
    None, (-1.0, 1.0), _COS_INV, _paired, needs=frozenset({"unit"}), same_width=True,
    label="cosine of paired items (raw)",
))
register(Metric(
    "cos_unpaired", "cosine", "mean_{i!=j} cos(x_i, y_j)", "itself", None, (-1.0, 1.0), _COS_INV,
    _unpaired, needs=frozenset({"unit"}), same_width=True,
    label="cosine of unpaired items (raw)",
))
