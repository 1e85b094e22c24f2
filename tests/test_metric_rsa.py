"""RSA against scipy (pdist + spearmanr, an independent route), plus known values, ties and
the bootstrap recomputation."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

import hub.metrics as hm
from hub.metrics.rsa import avg_ranks


def reference(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(pdist(a), pdist(b)).statistic)


def _data(seed, L=2, n=40, d=12, dy=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(L, n, d, generator=g) + 2.0 * torch.randn(L, 1, d, generator=g)
    y = x @ torch.randn(d, dy or d, generator=g) / d**0.5 + 0.6 * torch.randn(L, n, dy or d, generator=g)
    return x, y


def _rsa(x, y, **kw):
    return hm.compare(x, y, metrics=["rsa"], n_boot=0, **kw).value.to_numpy()


def test_matches_scipy_reference_two_towers():
    for seed, dy in ((0, None), (1, 20)):
        x, y = _data(seed, dy=dy)
        ref = [reference(x[i].double().numpy(), y[i].double().numpy()) for i in range(len(x))]
        np.testing.assert_allclose(_rsa(x, y), ref, atol=1e-5)


def test_average_ranks_for_ties_like_scipy():
    from scipy.stats import rankdata

    v = torch.tensor([[3.0, 1.0, 3.0, 2.0, 1.0, 3.0], [0.5, 0.5, 0.5, 0.5, 0.1, 9.0]])
    np.testing.assert_array_equal(avg_ranks(v).numpy(), rankdata(v.numpy(), axis=1))


def test_identical_and_rotated_copy_score_one():
    x, _ = _data(2)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((12, 12)))
    np.testing.assert_allclose(_rsa(x, 0.3 * x @ torch.from_numpy(q).float() - 1.0), 1.0, atol=1e-6)


def test_bootstrap_resamples_equal_rsa_of_resampled_items():
    from hub.metrics.engine import evaluate
    from hub.metrics.resampling import boot_weights, permutations, resample_indices

    x, y = _data(3, L=1, n=30)
    w = boot_weights(30, 3, seed=4, device=x.device)
    r = evaluate(x, y, ("rsa",), k=5, csls=False, csls_k=5, x_mean=None, y_mean=None, boot_w=None,
                 boot_w_cka=w, perms=None, null_perms=permutations(30, 2, 0))["rsa"]
    for b, idx in enumerate(resample_indices(w)):  # copies: distance 0, tied pairs, average ranks
        ref = reference(x[0, idx].double().numpy(), y[0, idx].double().numpy())
        assert float(r.boot[0, b]) == pytest.approx(ref, abs=1e-4)


def test_unrelated_inputs_sit_at_the_permutation_baseline():
    """Within 4 null SDs (measured with the permutation null itself) of a baseline near 0."""
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, 60, 8, generator=g), torch.randn(2, 60, 8, generator=g)
    df = hm.compare(a, b, metrics=["rsa"], n_boot=0, n_perm=10)
    sd = hm.permutation_null(a, b, ["rsa"], n_perm=40, seed=1).groupby("layer").value.std().to_numpy()
    assert (abs(df.value - df.baseline).to_numpy() < 4 * sd).all()
    assert (abs(df.baseline).to_numpy() < 4 * sd / np.sqrt(10)).all()
