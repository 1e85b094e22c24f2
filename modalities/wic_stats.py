"""WiC evaluation statistics: the dev-chosen threshold, Wilson interval, AUC, Spearman's rho
with a Fisher-z interval (moved from modalities/wic.py, which re-exports them)."""
from __future__ import annotations

import numpy as np


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The cut (predict T when score > cut) with the best accuracy on these scores; among
    equally good cuts the middle one, so the choice does not hug a data point."""
    s = np.sort(np.unique(scores))
    cuts = np.concatenate([[s[0] - 1e-6], (s[:-1] + s[1:]) / 2, [s[-1] + 1e-6]])
    acc = np.array([((scores > c) == labels).mean() for c in cuts])
    best = np.flatnonzero(acc == acc.max())
    return float(cuts[best[len(best) // 2]])


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return float(mid - half), float(mid + half)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (probability a T pair outscores an F pair; ties count 1/2)."""
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
