"""CSLS retrieval (Conneau et al. 2018) in both directions against a straightforward numpy
reference. Hubs sit on both sides, so a y->x that fell back to plain cosine (or an x->y
that did) fails here."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import hub.metrics as hm


def reference(a: np.ndarray, b: np.ndarray, k: int, csls: bool) -> tuple[float, float]:
    """(x->y, y->x) top-1 accuracy; a hit needs the partner strictly above every other candidate."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    C = a @ b.T
    S = C
    if csls:
        rx = np.sort(C, axis=1)[:, -k:].mean(1)  # x_i: mean cosine to its k nearest y
        ry = np.sort(C, axis=0)[-k:, :].mean(0)  # y_j: mean cosine to its k nearest x
        S = 2 * C - rx[:, None] - ry[None, :]
    n = len(C)
    x2y = np.mean([S[i, i] > np.delete(S[i], i).max() for i in range(n)])
    y2x = np.mean([S[j, j] > np.delete(S[:, j], j).max() for j in range(n)])
    return float(x2y), float(y2x)


def _hubs(n=100, d=256, c=0.9, seed=17, noise=0.2):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, d, generator=g) / math.sqrt(d)
    hx, hy = torch.randn(d, generator=g), torch.randn(d, generator=g)
    hx, hy = hx / hx.norm(), hy / hy.norm()
    x = v + c * hx + noise * torch.randn(n, d, generator=g) / math.sqrt(d)  # x-queries share hx ...
    y = v + c * hy + noise * torch.randn(n, d, generator=g) / math.sqrt(d)  # ... y-queries share hy
    y[0], x[0] = hx, hy  # ... and each side holds a hub for the other side's queries
    return x[None], y[None]


def _ours(x, y, k, csls):
    return tuple(hm.retrieval_top1(x, y, csls=csls, csls_k=k, direction=d).item() for d in ("x2y", "y2x"))


def test_hubs_on_both_sides_fool_cosine_but_not_csls():
    x, y = _hubs()
    cos = _ours(x, y, 10, False)
    csls = _ours(x, y, 10, True)
    assert max(cos) < 0.5 and min(csls) > 0.9, (cos, csls)
    np.testing.assert_allclose(cos, reference(x[0].numpy(), y[0].numpy(), 10, False), atol=1e-6)
    np.testing.assert_allclose(csls, reference(x[0].numpy(), y[0].numpy(), 10, True), atol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_csls_both_directions_match_reference_on_random_pairs(k):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(3, 80, 24, generator=g) + 1.5 * torch.randn(3, 1, 24, generator=g)
    y = x + 1.2 * torch.randn(3, 80, 24, generator=g)
    df = hm.compare(x, y, metrics=["retrieval_x2y", "retrieval_y2x", "retrieval_top1"], csls=True, csls_k=k, n_boot=0)
    for layer in range(3):
        rx, ry = reference(x[layer].numpy(), y[layer].numpy(), k, True)
        got = df[df.layer == layer].set_index("metric").value
        assert got["retrieval_x2y"] == pytest.approx(rx, abs=1e-6)
        assert got["retrieval_y2x"] == pytest.approx(ry, abs=1e-6)
        assert got["retrieval_top1"] == pytest.approx((rx + ry) / 2, abs=1e-6)
