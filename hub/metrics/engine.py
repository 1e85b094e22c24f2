"""The fused evaluation: every requested metric over all layers, sharing one set of Grams.

Layers are processed in chunks so that one stacked ``[chunk, n, n]`` fp32 matrix stays
under 64 MiB. For each chunk a :class:`~hub.metrics.shared.Chunk` computes the shared
quantities on first use (centred Grams, k-NN indices, cosine Grams, the cross cosine) and
each metric of the registry reads them, in :func:`~hub.metrics.registry.stage` order.
Per-item scores of mean-type metrics are bootstrapped at the end, over all layers at once.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hub.metrics.inputs import MeanLike, resolve_mean, row_norms
from hub.metrics.registry import REGISTRY, stage
from hub.metrics.resampling import Res
from hub.metrics.shared import Chunk, Options, Part

# Upper bound on one stacked [chunk, n, n] fp32 matrix; layers are processed in chunks of
# this size so peak memory stays ~ a handful of these regardless of the number of layers.
CHUNK_BYTES = 64 * 2**20


def _cat(parts: list[Part], key: str) -> Tensor | None:
    vals = [getattr(p, key) for p in parts]
    return None if any(v is None for v in vals) else torch.cat(vals, dim=0)


def evaluate(
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
    null_perms: Tensor | None = None,
    already_centred: bool = False,
    undefined: str = "raise",
) -> dict[str, Res]:
    """All ``metrics`` for preprocessed fp32 ``x: [L, n, dx]``, ``y: [L, n, dy]``.

    ``boot_w: [B, n]`` multiplicities for per-item (percentile) CIs, ``boot_w_cka: [Bc, n]``
    for recomputed (normal) CIs; ``perms: [P, n]`` requested item permutations of y;
    ``null_perms``: permutations for metrics without an analytic chance level when ``perms``
    is None (their baseline is the permutation mean). ``undefined``: where a metric has no
    value at some layers (see ``Metric.undefined``), ``"raise"`` a ValueError naming them, or
    keep ``"nan"`` there (a sweep cell then still finishes; the report counts them).
    """
    if undefined not in ("raise", "nan"):
        raise ValueError(f"undefined must be 'raise' or 'nan'; got {undefined!r}")
    L, n, _ = x.shape
    specs = sorted((REGISTRY[m] for m in metrics), key=stage)
    needs = set().union(*(s.needs for s in specs))
    # row lengths [L, n, 1] (checked once); each chunk divides its own layers by them, so no
    # [L, n, d] copy of unit rows is allocated
    xn = row_norms(x, "x") if needs & {"unit", "cross"} else None
    yn = row_norms(y, "y") if needs & {"unit", "cross"} else None
    xm = ym = None
    own = "cos_centered" in metrics and not already_centred and x_mean is None and y_mean is None
    if "cos_centered" in metrics and not already_centred and not own:
        xm, ym = resolve_mean(x_mean, x, "x_mean"), resolve_mean(y_mean, y, "y_mean")
    opts = Options(
        k=k, csls=csls, csls_k=csls_k, want=frozenset(metrics), boot_w_cka=boot_w_cka, perms=perms,
        null_perms=perms if perms is not None else null_perms, x_mean=xm, y_mean=ym, own_mean=own,
    )
    gram_like = needs & {"gram", "knn", "cos_gram", "cross"}
    chunk = max(1, CHUNK_BYTES // (n * n * 4)) if gram_like else L
    last_self = max((i for i, s in enumerate(specs) if stage(s) < 2), default=-1)
    parts: dict[str, list[Part]] = {s.name: [] for s in specs}
    ws: dict[str, Tensor] = {}  # n x n buffers reused by every chunk
    for s in range(0, L, chunk):
        ch = Chunk(x, y, xn, yn, s, min(s + chunk, L), opts, ws=ws)
        for i, spec in enumerate(specs):
            parts[spec.name].append(spec.evaluate(ch))
            if i == last_self:
                ch.release_grams()
        del ch

    res: dict[str, Res] = {}
    for spec in specs:
        p = parts[spec.name]
        value, perm = _cat(p, "value"), _cat(p, "perm")
        bad = ~torch.isfinite(value)
        if undefined == "raise" and bool(bad.any()):
            lay = torch.nonzero(bad).flatten().tolist()
            raise ValueError(f"{spec.name} is undefined at layers (0-based) {lay}: {spec.undefined} "
                             "(compare(..., undefined='nan') reports NaN there instead)")
        base = _cat(p, "baseline")
        if base is None:
            if spec.chance is not None:
                base = torch.full((L,), float(spec.chance(n, k)), device=x.device)
            elif perm is not None and perm.shape[1]:
                base = perm.mean(1)
            else:
                raise ValueError(f"{spec.name} has no analytic baseline: it needs item permutations (n_perm >= 1)")
        items = _cat(p, "items")
        if items is not None:
            boot = None if boot_w is None else items @ boot_w.T / n
        else:
            boot = _cat(p, "boot")
        res[spec.name] = Res(value, base, boot, perm, spec.ci, spec.bounds)
    return res
