"""The comparator's entry points: :func:`compare` (the tidy per-layer table), the
permutation nulls, and one-metric helpers returning ``Tensor[layer]``.

Every function takes two stacks of states ``x, y: [layer, n, d]`` where ``x[:, i]`` is paired
with ``y[:, i]`` (a sentence and its translation, code and its description, an image and its
caption ...). The metrics, their baselines, bounds and invariances are listed in the registry
(:mod:`hub.metrics.registry`; README "Comparator metrics"); higher = more similar for all.

Why the baselines: LM hidden states are anisotropic (unrelated inputs often have cosine > 0.9)
and biased CKA scores independent high-dimensional noise as similar, so a raw number means
nothing without its chance level. ``baseline`` is the analytic chance / unpaired value where
one exists, else the mean over ``n_perm`` item permutations of y; pass
``baseline="permutation"`` to :func:`compare` for the empirical permutation null for every
metric (y's items shuffled, the same permutation at every layer). When a score is maximised
over layers, compare the maximum with :func:`max_over_layers_null`, not a per-layer null.

Confidence intervals are bootstraps over items (deterministic given ``seed``; the same
resamples at every layer and for every metric): means of per-item scores (cosine family,
retrieval, mknn) resample the per-item scores (``n_boot``, percentile interval; for
``cos_adjusted`` the unpaired means are not recomputed per resample, a first-order
approximation); the others (CKA, CKNNA, Procrustes, RSA) are recomputed exactly on
``n_boot_cka = min(n_boot, 20)`` resamples and get a normal interval ``value +/- z * SE``
(an SE is stable with few resamples; percentiles are not).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hub.metrics.engine import evaluate
from hub.metrics.inputs import (
    MeanLike, as_states, check_int, check_metrics, check_n, check_pair, clamp_outliers, resolve_mean,
)
from hub.metrics.registry import REGISTRY, names
from hub.metrics.resampling import boot_weights, interval, permutations

METRICS: tuple[str, ...] = names(default_only=True)
EXTRA_METRICS: tuple[str, ...] = tuple(m for m in names() if m not in METRICS)
ALL_METRICS: tuple[str, ...] = names()
COLUMNS: tuple[str, ...] = ("metric", "layer", "value", "baseline", "ci_low", "ci_high", "n")
_CKA_BOOT_DEFAULT = 20


def _null_perms(metrics: Sequence[str], n: int, n_perm: int, seed: int, device: torch.device) -> Tensor | None:
    """Permutations for metrics whose baseline is a permutation mean (None if none asks)."""
    if not any(REGISTRY[m].null_baseline for m in metrics):
        return None
    if n_perm < 1:
        ask = [m for m in metrics if REGISTRY[m].null_baseline]
        raise ValueError(f"n_perm must be >= 1: the baseline of {ask} is a permutation mean; got n_perm={n_perm}")
    return permutations(n, n_perm, seed).to(device)


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
    metrics = check_metrics(metrics)
    x, y = as_states(x, "x"), as_states(y, "y")
    check_pair(x, y, metrics)
    check_n(x.shape[1], metrics, k, bool(csls), csls_k)
    if clamp is not None:
        x, y = clamp_outliers(x, clamp), clamp_outliers(y, clamp)
    if center:
        x = x - resolve_mean(x_mean, x, "x_mean")
        y = y - resolve_mean(y_mean, y, "y_mean")
    elif "cos_centered" in metrics:  # validate the given means early
        if x_mean is not None:
            resolve_mean(x_mean, x, "x_mean")
        if y_mean is not None:
            resolve_mean(y_mean, y, "y_mean")
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
    undefined: Literal["raise", "nan"] = "raise",
) -> pd.DataFrame:
    """Compare paired states layer by layer; one tidy row per (metric, layer).

    Args:
        x, y: ``[layer, n, d]`` states (any float dtype, computed in fp32); ``x[:, i]`` is
            paired with ``y[:, i]``. ``d`` may differ between x and y except for metrics
            that compare them directly (cosine family, retrieval: ``same_width`` in the registry).
        metrics: names from :data:`METRICS` (default: all six) and :data:`EXTRA_METRICS`.
        k: neighbours for ``mknn`` and ``cknna`` (1 <= k < n); mknn's chance is k / (n - 1).
        csls, csls_k: retrieve with CSLS (hubness-corrected) instead of raw cosine, using
            csls_k neighbours for each side's mean similarity.
        n_boot, ci, seed: bootstrap resamples over items, interval coverage, RNG seed (the
            table is deterministic given the seed). ``n_boot=0`` disables the CI: ``ci_low``
            and ``ci_high`` are then NaN on purpose.
        n_boot_cka: resamples for the recomputed metrics (CKA, CKNNA, Procrustes, RSA: each
            recomputes the metric on the resampled items);
            default ``min(n_boot, 20)``; interval = value +/- z * bootstrap SE.
        clamp: clip outlier dimensions before everything (see :func:`clamp_outliers`).
        center: subtract the item mean (``x_mean`` / ``y_mean`` if given, ``[d]`` or
            ``[layer, d]``) from x and y before every metric. ``cos_centered`` always
            centres, using ``x_mean`` / ``y_mean`` when given (e.g. fitted on another split,
            so the score does not depend on batch composition).
        layers: labels for the ``layer`` column (default ``0..L-1``).
        baseline: ``"analytic"`` (chance / unpaired value, see module docstring) or
            ``"permutation"``: mean score over ``n_perm`` random item shufflings of y.
            Metrics with no analytic chance level (``cknna``, ``procrustes``, ``rsa``) always
            take the permutation mean over ``n_perm`` shufflings as their baseline.
        undefined: where a metric has no value at a layer (registry ``Metric.undefined``),
            raise (``"raise"``) or give NaN value and CI in that row (``"nan"``, as the experiments do).

    Returns:
        DataFrame with columns ``metric, layer, value, baseline, ci_low, ci_high, n``.

    Raises:
        ValueError: naming the argument, for shape mismatches, n < 2 (n < 4 for
            ``cka_debiased``), k >= n, non-finite inputs, zero vectors and the like.
    """
    n_boot = check_int(n_boot, "n_boot", 0)
    if not (isinstance(ci, (int, float)) and 0.0 < float(ci) < 1.0):
        raise ValueError(f"ci must be a coverage in (0, 1), e.g. 0.95; got {ci!r}")
    if baseline not in ("analytic", "permutation"):
        raise ValueError(f"baseline must be 'analytic' or 'permutation'; got {baseline!r}")
    n_perm = check_int(n_perm, "n_perm", 1 if baseline == "permutation" else 0)
    n_boot_cka = min(n_boot, _CKA_BOOT_DEFAULT) if n_boot_cka is None else check_int(n_boot_cka, "n_boot_cka", 0)
    seed = check_int(seed, "seed", 0)
    x, y, metrics = _prepare(x, y, metrics, k, csls, csls_k, clamp, center, x_mean, y_mean)
    L, n, _ = x.shape
    labels = _labels(layers, L)
    bw = boot_weights(n, n_boot, seed, x.device) if n_boot else None
    bwc = bw[:n_boot_cka] if (bw is not None and n_boot_cka <= n_boot) else (
        boot_weights(n, n_boot_cka, seed, x.device) if n_boot_cka else None
    )
    perms = permutations(n, n_perm, seed).to(x.device) if baseline == "permutation" else None
    null_perms = _null_perms(metrics, n, n_perm, seed, x.device) if perms is None else None
    res = evaluate(
        x, y, metrics, k=k, csls=bool(csls), csls_k=csls_k, x_mean=x_mean, y_mean=y_mean,
        boot_w=bw, boot_w_cka=bwc, perms=perms, null_perms=null_perms, already_centred=bool(center),
        undefined=undefined,
    )
    frames = []
    for name in metrics:
        r = res[name]
        lo, hi = interval(r, float(ci))
        gone = ~np.isfinite(r.value.double().cpu().numpy())
        lo[gone] = hi[gone] = np.nan
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
    n_perm = check_int(n_perm, "n_perm", 1)
    seed = check_int(seed, "seed", 0)
    x, y, metrics = _prepare(x, y, metrics, k, csls, csls_k, clamp, center, x_mean, y_mean)
    L, n, _ = x.shape
    labels = _labels(layers, L)
    perms = permutations(n, n_perm, seed).to(x.device)
    res = evaluate(
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
    n_perm = check_int(n_perm, "n_perm", 1)
    seed = check_int(seed, "seed", 0)
    x, y, metrics = _prepare(x, y, metric, k, csls, csls_k, clamp, center, x_mean, y_mean)
    L, n, _ = x.shape
    labels = _labels(layers, L)
    perms = permutations(n, n_perm, seed).to(x.device)
    r = evaluate(
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
    r = evaluate(
        x, y, metrics, k=k, csls=bool(csls), csls_k=csls_k, x_mean=x_mean, y_mean=y_mean,
        boot_w=None, boot_w_cka=None, perms=None, null_perms=_null_perms(metrics, x.shape[1], 5, 0, x.device),
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
