"""Inputs of the comparator: validation (one clear message naming the argument) and
preprocessing (outlier clamping, centring, unit rows).

States are ``[layer, n, d]`` tensors; ``x[:, i]`` is paired with ``y[:, i]``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from hub.metrics.registry import REGISTRY, names

MeanLike = Tensor | np.ndarray | None


def as_states(t: object, name: str) -> Tensor:
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
    # one cheap reduction: a NaN/inf element makes the sum non-finite; only then (or if the
    # finite values overflow the sum) are the bad elements counted for the message
    bad = 0 if bool(torch.isfinite(t.sum())) else int((~torch.isfinite(t)).sum())
    if bad:
        raise ValueError(
            f"{name} contains {bad} non-finite values (NaN or inf) out of {t.numel()}; "
            "expected finite hidden states"
        )
    return t


def check_pair(x: Tensor, y: Tensor, metrics: Sequence[str]) -> None:
    """Same layers and items; the same width where a metric compares x and y directly."""
    if x.shape[0] != y.shape[0] or x.shape[1] != y.shape[1]:
        raise ValueError(
            "x and y must have the same number of layers and items ([layer, n, d]); "
            f"got x {tuple(x.shape)} and y {tuple(y.shape)}"
        )
    need_d = sorted(m for m in metrics if REGISTRY[m].same_width)
    if need_d and x.shape[2] != y.shape[2]:
        free = ", ".join(m for m in names() if not REGISTRY[m].same_width)
        raise ValueError(
            f"metrics {need_d} compare x and y directly and need the same width d; got "
            f"x {tuple(x.shape)} and y {tuple(y.shape)} ([layer, n, d]). "
            f"{free} accept different widths."
        )
    if x.device != y.device:
        raise ValueError(f"x and y must be on the same device; got {x.device} and {y.device}")


def check_metrics(metrics: str | Sequence[str]) -> tuple[str, ...]:
    """Registered, distinct metric names as a tuple."""
    known = names()
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    if not metrics:
        raise ValueError(f"metrics must name at least one of {known}; got an empty list")
    unknown = [m for m in metrics if m not in REGISTRY]
    if unknown:
        raise ValueError(f"metrics: unknown {unknown}; expected names from {known}")
    if len(set(metrics)) != len(metrics):
        raise ValueError(f"metrics: duplicates in {metrics}")
    return metrics


def check_int(value: object, name: str, low: int, high: int | None = None, why: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {rng}{why}; got {name}={value}")
    return value



def check_n(n: int, metrics: Sequence[str], k: int, csls: bool, csls_k: int) -> None:
    """Enough items for every metric asked for; k and csls_k within range."""
    if n < 2:
        raise ValueError(f"n (number of paired items) must be >= 2 to have unpaired items; got n={n}")
    for m in metrics:
        spec = REGISTRY[m]
        if n < spec.min_n:
            raise ValueError(f"{m} needs n >= {spec.min_n} items; got n={n}")
    if any(REGISTRY[m].uses_k for m in metrics):
        check_int(k, "k", 1, n - 1, f" (neighbours excluding self, n={n})")
    if csls and any(REGISTRY[m].family == "retrieval" for m in metrics):
        check_int(csls_k, "csls_k", 1, n, f" (CSLS neighbourhood, n={n})")


def resolve_mean(mean: MeanLike, t: Tensor, name: str) -> Tensor:
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
    x = as_states(x, "x")
    if clamp is not None:
        x = clamp_outliers(x, clamp)
    if center:
        x = x - resolve_mean(mean, x, "mean")
    return x


def row_norms(t: Tensor, name: str) -> Tensor:
    """Lengths ``[..., 1]`` of the rows of ``t: [..., d]``; raises if any is 0 (no cosine)."""
    norm = t.norm(dim=-1, keepdim=True)
    zero = int((norm == 0).sum())
    if zero:
        raise ValueError(
            f"{name} has {zero} zero vectors (items x layers); cosine is undefined for them"
        )
    return norm


def unit(t: Tensor, name: str, inplace: bool = False) -> Tensor:
    """Rows of ``t: [..., d]`` scaled to unit length (in place on a temporary if asked)."""
    norm = row_norms(t, name)
    return t.div_(norm) if inplace else t / norm

