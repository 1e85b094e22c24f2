"""Orthogonal Procrustes similarity against scipy's orthogonal_procrustes (an independent
route: fit the rotation, then 1 - half the squared distance), plus known values."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes

import hub.metrics as hm
from hub.metrics.procrustes import similarity


def reference(a: np.ndarray, b: np.ndarray) -> float:
    """1 - ||A R - B||_F^2 / 2 for centred, unit-Frobenius A, B and the best orthogonal R."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    R, _ = orthogonal_procrustes(a, b)
    return 1.0 - np.linalg.norm(a @ R - b) ** 2 / 2


def _data(seed, L=2, n=50, d=16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(L, n, d, generator=g) + torch.randn(L, 1, d, generator=g)
    y = x @ torch.randn(d, d, generator=g) / d**0.5 + 0.8 * torch.randn(L, n, d, generator=g)
    return x, y


def _proc(x, y):
    return hm.compare(x, y, metrics=["procrustes"], n_boot=0).value.to_numpy()


@pytest.mark.parametrize(("n", "d"), [(50, 16), (12, 40)])  # d-space SVD route, and the Gram route (n < d)
def test_matches_scipy_reference(n, d):
    x, y = _data(0, n=n, d=d)
    ref = [reference(x[i].double().numpy(), y[i].double().numpy()) for i in range(len(x))]
    np.testing.assert_allclose(_proc(x, y), ref, atol=1e-5)


def test_both_routes_agree_and_different_widths_work():
    x, y = _data(1, n=30, d=20)
    xc, yc = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    grams = (xc @ xc.transpose(1, 2), yc @ yc.transpose(1, 2))
    from hub.metrics.procrustes import nuclear_from_grams

    via_svd = torch.linalg.svdvals((xc.transpose(1, 2) @ yc).double()).sum(-1)
    torch.testing.assert_close(nuclear_from_grams(*grams), via_svd, atol=1e-3, rtol=1e-5)
    wide = torch.cat([y, torch.randn(2, 30, 7)], -1)  # dy = 27 != dx
    assert np.isfinite(_proc(x, wide)).all()
    np.testing.assert_allclose(similarity(xc, yc).numpy(), _proc(x, y), atol=1e-6)


def test_rotated_scaled_translated_copy_scores_one_and_noise_scores_less():
    x, _ = _data(2)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((16, 16)))
    copy = 2.5 * x @ torch.from_numpy(q).float() + 3.0
    np.testing.assert_allclose(_proc(x, copy), 1.0, atol=1e-5)
    noisy = _proc(x, copy + 3.0 * torch.randn_like(copy))
    assert (noisy < 0.95).all()
    df = hm.compare(x, torch.randn_like(x), metrics=["procrustes"], n_boot=0, n_perm=8)
    assert (abs(df.value - df.baseline) < 0.1).all()  # unrelated data sits at its permutation baseline


def test_constant_layer_is_an_error():
    x, y = _data(3)
    x[1] = 1.0
    with pytest.raises(ValueError, match=r"procrustes is undefined at layers \(0-based\) \[1\]"):
        _proc(x, y)
