"""Every registered metric keeps the invariances it declares and stays within its bounds.

The registry (hub/metrics/registry.py) is the one place a metric states its invariances;
this test applies each declared transformation and checks the value does not move.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import hub.metrics as hm
from hub.metrics.registry import INVARIANCES, REGISTRY


def _data(L=2, n=48, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(L, n, d, generator=g) + 2.0 * torch.randn(L, 1, d, generator=g)
    y = x + 0.8 * torch.randn(L, n, d, generator=g)
    return x, y, g


def _orth(d: int, seed: int) -> torch.Tensor:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return torch.from_numpy(q).float()


def _values(x, y, name):
    return hm.compare(x, y, metrics=[name], n_boot=0, k=5).value.to_numpy()


TRANSFORMS = {
    "orthogonal": lambda x, y, g: (x @ _orth(x.shape[-1], 1), y @ _orth(y.shape[-1], 1)),
    "orthogonal_each": lambda x, y, g: (x @ _orth(x.shape[-1], 1), y @ _orth(y.shape[-1], 2)),
    "isotropic_scale": lambda x, y, g: (3.7 * x, 0.25 * y),
    "translation": lambda x, y, g: (x + 4.0 * torch.randn(1, 1, x.shape[-1], generator=g), y - 2.0),
    "item_scale": lambda x, y, g: (x * (0.2 + 5 * torch.rand(x.shape[0], x.shape[1], 1, generator=g)), y),
    "item_permutation": lambda x, y, g: (lambda p: (x[:, p], y[:, p]))(torch.randperm(x.shape[1], generator=g)),
}


def test_every_invariance_has_a_transform():
    assert set(TRANSFORMS) == set(INVARIANCES)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_declared_invariances_hold(name):
    spec = REGISTRY[name]
    assert spec.invariances, f"{name} declares no invariance"
    x, y, g = _data()
    base = _values(x, y, name)
    for inv in sorted(spec.invariances):
        tx, ty = TRANSFORMS[inv](x, y, g)
        np.testing.assert_allclose(_values(tx, ty, name), base, atol=2e-5, err_msg=f"{name}: {inv}")


@pytest.mark.parametrize(("name", "inv"), [(m, i) for m in sorted(REGISTRY) for i in ("translation", "orthogonal_each")
                                            if i not in REGISTRY[m].invariances])
def test_undeclared_invariances_fail(name, inv):
    """The check can fail: a transformation a metric does not declare moves it (e.g. cosine-based
    CKNNA under translation, paired cosine under unrelated rotations)."""
    x, y, g = _data(seed=3)
    tx, ty = TRANSFORMS[inv](x, y, g)
    assert not np.allclose(_values(tx, ty, name), _values(x, y, name), atol=1e-3), name


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_values_and_intervals_within_bounds(name):
    x, y, _ = _data(n=40, seed=5)
    df = hm.compare(x, y, metrics=[name], n_boot=20, k=5)
    lo, hi = REGISTRY[name].bounds
    cols = df[["value", "ci_low", "ci_high"]].to_numpy()
    assert np.isfinite(cols).all() and (cols >= lo - 1e-6).all() and (cols <= hi + 1e-6).all(), name
    assert np.isfinite(df.baseline).all()


def test_registry_rejects_bad_declarations():
    spec = REGISTRY["rsa"]
    with pytest.raises(ValueError, match="already registered"):
        hm.register(spec)
    with pytest.raises(ValueError, match=r"unknown invariances \['rotation'\]"):
        hm.Metric("x", "f", "d", "b", None, (0.0, 1.0), frozenset({"rotation"}), spec.evaluate)


@pytest.mark.parametrize("n", [512, 1100, 2048])
def test_shared_gram_and_grouped_topk_are_exact(n):
    """The block-symmetric Gram equals a full product; the grouped top-k picks torch.topk's set."""
    from hub.metrics.shared import sym_gram, topk_indices

    a = torch.randn(2, n, 24, generator=torch.Generator().manual_seed(n))
    full = torch.bmm(a, a.transpose(1, 2))
    torch.testing.assert_close(sym_gram(a), full, atol=1e-4, rtol=1e-5)
    for k in (1, 10):
        got = topk_indices(full, k).sort(-1).values
        assert torch.equal(got, full.topk(k, dim=-1).indices.sort(-1).values), (n, k)
