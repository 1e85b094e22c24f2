"""Resampling: bootstrap multiplicities, item permutations and the intervals built from them.

The same resamples serve every layer and every metric (deterministic given ``seed``), so
intervals of different metrics and layers are comparable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
import torch
from torch import Tensor


def boot_weights(n: int, n_boot: int, seed: int, device: torch.device) -> Tensor:
    """Bootstrap multiplicities ``[n_boot, n]`` (each row sums to n), deterministic in seed."""
    g = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, n, (n_boot, n), generator=g)
    w = torch.zeros(n_boot, n).scatter_add_(1, idx, torch.ones(n_boot, n))
    return w.to(device)


def resample_indices(w: Tensor) -> list[Tensor]:
    """Item indices of each resample with multiplicities ``w: [B, n]`` (item i repeated w_i
    times, in item order): B tensors ``[sum_i w_bi]``."""
    ar = torch.arange(w.shape[1], device=w.device)
    return [torch.repeat_interleave(ar, row.long()) for row in w]


def permutations(n: int, n_perm: int, seed: int) -> Tensor:
    """``[n_perm, n]`` random permutations of the items, deterministic in seed."""
    g = torch.Generator().manual_seed(int(seed) + 7919)
    if n_perm == 0:
        return torch.empty(0, n, dtype=torch.long)
    return torch.stack([torch.randperm(n, generator=g) for _ in range(n_perm)])


@dataclass
class Res:
    """One metric, all layers: value [L], baseline [L], boot [L, B], perm [L, P]."""

    value: Tensor
    baseline: Tensor
    boot: Tensor | None = None
    perm: Tensor | None = None
    ci: Literal["percentile", "normal"] = "percentile"
    bounds: tuple[float, float] = (-math.inf, math.inf)


def interval(r: Res, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) per layer from the bootstrap distribution ``r.boot: [L, B]``: percentile
    interval, or ``value +/- z * SE`` for ``ci="normal"``; clipped to the metric's bounds."""
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
