"""CKNNA (Huh et al. 2024) against a straightforward numpy transcription of the authors'
``cknna`` / ``hsic_unbiased`` (float64), plus known values."""
from __future__ import annotations

import numpy as np
import torch

import hub.metrics as hm


def _hsic_unbiased(K: np.ndarray, L: np.ndarray) -> float:
    m = K.shape[0]
    Kt, Lt = K.copy(), L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    v = (Kt * Lt.T).sum() + Kt.sum() * Lt.sum() / ((m - 1) * (m - 2)) - 2 * (Kt @ Lt).sum() / (m - 2)
    return v / (m * (m - 3))


def reference_cknna(a: np.ndarray, b: np.ndarray, k: int) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    K, L = a @ a.T, b @ b.T
    n = len(K)

    def mask(G):
        Gh = G.copy()
        np.fill_diagonal(Gh, -np.inf)
        m = np.zeros_like(G)
        np.put_along_axis(m, np.argsort(-Gh, axis=1)[:, :k], 1.0, axis=1)
        return m

    mk, ml = mask(K), mask(L)
    kl = _hsic_unbiased(mk * ml * K, mk * ml * L)
    return kl / np.sqrt(_hsic_unbiased(mk * K, mk * K) * _hsic_unbiased(ml * L, ml * L))


def _data(seed, L=3, n=60, d=20, dy=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(L, n, d, generator=g) + 1.5 * torch.randn(L, 1, d, generator=g)
    W = torch.randn(d, dy or d, generator=g) / d**0.5
    y = x @ W + 0.7 * torch.randn(L, n, dy or d, generator=g)
    return x, y


def _cknna(x, y, k):
    return hm.compare(x, y, metrics=["cknna"], k=k, n_boot=0).value.to_numpy()


def test_matches_reference_including_two_towers_and_k():
    for seed, dy, k in ((0, None, 5), (1, 12, 8), (2, 30, 3)):
        x, y = _data(seed, dy=dy)
        ref = [reference_cknna(x[i].double().numpy(), y[i].double().numpy(), k) for i in range(len(x))]
        np.testing.assert_allclose(_cknna(x, y, k), ref, atol=1e-4)


def test_large_n_grouped_topk_path_matches_reference():
    x, y = _data(3, L=1, n=1024, d=24)  # n / 16 >= 4k: the grouped exact top-k runs
    ref = reference_cknna(x[0].double().numpy(), y[0].double().numpy(), 10)
    np.testing.assert_allclose(_cknna(x, y, 10), [ref], atol=1e-4)


def test_identical_scores_one_and_unrelated_is_near_its_permutation_baseline():
    x, _ = _data(4)
    np.testing.assert_allclose(_cknna(x, 2.0 * x.clone(), 5), 1.0, atol=1e-5)
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, 200, 16, generator=g), torch.randn(2, 200, 16, generator=g)
    df = hm.compare(a, b, metrics=["cknna"], k=10, n_boot=0, n_perm=10)
    paired = hm.compare(a, a + 0.3 * torch.randn(2, 200, 16, generator=g), metrics=["cknna"], k=10, n_boot=0)
    assert (abs(df.value - df.baseline) < 0.1).all() and (paired.value > 0.5).all()


def test_bootstrap_recomputes_on_resampled_items():
    """Each CI resample is CKNNA of the resampled items. Subsamples (no copies) match the
    reference exactly; with copies, ties at the k-th neighbour (a neighbour and its copy are
    equally near) leave the value to tie-breaking, so those agree only approximately."""
    from hub.metrics.engine import evaluate
    from hub.metrics.resampling import boot_weights, permutations, resample_indices

    x, y = _data(6, L=1, n=40, d=12)
    g = torch.Generator().manual_seed(1)
    subsets = (torch.rand(3, 40, generator=g) < 0.75).float()  # multiplicities 0/1: no copies
    for w, tol in ((subsets, 1e-4), (boot_weights(40, 3, seed=2, device=x.device), 2e-2)):
        r = evaluate(x, y, ("cknna",), k=5, csls=False, csls_k=5, x_mean=None, y_mean=None, boot_w=None,
                     boot_w_cka=w, perms=None, null_perms=permutations(40, 2, 0))["cknna"]
        for b, idx in enumerate(resample_indices(w)):
            ref = reference_cknna(x[0, idx].double().numpy(), y[0, idx].double().numpy(), 5)
            assert abs(float(r.boot[0, b]) - ref) < tol, (b, tol)
