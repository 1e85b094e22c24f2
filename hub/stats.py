"""Interval and rank statistics shared by the experiments (one copy of each).

- :func:`mean_ci`: mean over items with a normal-approximation interval (lens readouts);
- :func:`bootstrap_mean_ci`: mean with a percentile-bootstrap interval over items;
- :func:`wilson`: Wilson score interval of a proportion;
- :func:`auc`: ROC AUC as P(positive outscores negative), ties 1/2;
- :func:`spearman_ci`: Spearman's rho with a Fisher-z interval.

The comparator's metric intervals (resampling of per-item Gram sums) live with the metrics.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hub.errors import UserError


def mean_ci(values: np.ndarray, z: float = 1.96, bounds: tuple[float, float] | None = None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 and its normal-approximation interval. ``[n, ...] -> 3 x [...]``.

    ``bounds``: the range of the quantity (``(0, 1)`` for probabilities); the interval is
    clipped to it, so a band never shows impossible values (a probability below 0)."""
    n = values.shape[0]
    m = values.mean(0)
    half = z * values.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(m)
    lo, hi = m - half, m + half
    if bounds is not None:
        lo, hi = np.clip(lo, *bounds), np.clip(hi, *bounds)
    return m, lo, hi


def bootstrap_indices(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``[n_boot, n]`` item indices drawn with replacement (numpy's default generator, ``seed``)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_mean_ci(values: np.ndarray | Sequence[float], ci: float = 0.95, n_boot: int = 1000, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over axis 0 of ``values [n, ...]`` and its percentile-bootstrap interval.

    Every trailing column is resampled with the same item indices (``bootstrap_indices``),
    so intervals of several layers or contrasts come from one set of resamples. One item or
    ``n_boot <= 0`` gives a zero-width interval. Returns arrays shaped ``values.shape[1:]``
    (0-d for 1-d input; ``float()`` them for scalars).
    """
    x = np.asarray(values, dtype=float)
    if x.shape[0] == 0:
        raise UserError("bootstrap_mean_ci: no values: expected at least one unit")
    m = x.mean(0)
    if x.shape[0] == 1 or n_boot <= 0:
        return m, m.copy(), m.copy()
    boots = x[bootstrap_indices(x.shape[0], n_boot, seed)].mean(1)  # [n_boot, ...]
    a = (1 - ci) / 2
    return m, np.quantile(boots, a, axis=0), np.quantile(boots, 1 - a, axis=0)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (nan, nan for n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return float(mid - half), float(mid + half)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (probability a positive outscores a negative; ties count 1/2)."""
    labels = np.asarray(labels, dtype=bool)
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def spearman_ci(x: np.ndarray, y: np.ndarray, z: float = 1.96) -> tuple[float, float, float]:
    """Spearman's rho with a Fisher-z interval (SE 1.06 / sqrt(n - 3), Fieller et al. 1957)."""
    from scipy.stats import spearmanr

    n = len(x)
    rho = float(spearmanr(x, y).statistic)
    if n < 4 or not np.isfinite(rho):
        return rho, float("nan"), float("nan")
    r = np.clip(rho, -0.999999, 0.999999)
    half = z * 1.06 / np.sqrt(n - 3)
    lo, hi = float(np.tanh(np.arctanh(r) - half)), float(np.tanh(np.arctanh(r) + half))
    return rho, min(lo, rho), max(hi, rho)
