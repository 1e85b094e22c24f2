"""Property tests for hub.metrics: invariances, chance levels, nulls, CIs, errors.

Tolerances are stated in standard errors of the statistic under test (derived from n or
measured with the permutation null), not as magic numbers.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import hub.metrics as hc
from hub.metrics.hsic import cka_chunk
from hub.metrics.inputs import unit
from hub.metrics.resampling import boot_weights, permutations
from hub.metrics.shared import sym_gram
from hub.metrics import (
    COLUMNS,
    METRICS,
    cka,
    cka_debiased,
    compare,
    cos_adjusted,
    cos_centered,
    cos_paired,
    cos_unpaired,
    max_over_layers_null,
    mknn,
    permutation_null,
    retrieval_top1,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _paired(L=3, n=60, d=24, noise=0.7, offset=2.0, seed=0, dy=None):
    """y = (linear map of) x + noise, with a shared offset making raw cosines anisotropic."""
    g = _gen(seed)
    x = torch.randn(L, n, d, generator=g) + offset * torch.randn(L, 1, d, generator=g)
    if dy is None:
        y = x + noise * torch.randn(L, n, d, generator=g)
    else:
        y = x @ torch.randn(d, dy, generator=g) / math.sqrt(d) + noise * torch.randn(L, n, dy, generator=g)
    return x, y


def _orth(d: int, seed: int) -> torch.Tensor:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return torch.from_numpy(q).float()


def _values(df: pd.DataFrame, metric: str) -> np.ndarray:
    return df[df.metric == metric].sort_values("layer").value.to_numpy()


# ------------------------------------------------------------------ naive reference (numpy)
def _np_unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def _np_metrics(a: np.ndarray, b: np.ndarray, k: int) -> dict[str, float]:
    """One layer, written from the definitions in float64, no shared computation."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    n = len(a)
    out = {}
    c = _np_unit(a) @ _np_unit(b).T
    off = ~np.eye(n, dtype=bool)
    out["cos_adjusted"] = np.diag(c).mean() - c[off].mean()
    ac, bc = a - a.mean(0), b - b.mean(0)
    cc = _np_unit(ac) @ _np_unit(bc).T
    out["cos_centered"] = np.diag(cc).mean() - cc[off].mean()
    K, Lg = ac @ ac.T, bc @ bc.T  # = H a a' H
    out["cka"] = (K * Lg).sum() / np.sqrt((K * K).sum() * (Lg * Lg).sum())

    def hsic_u(k_, l_):
        k_, l_ = k_ * off, l_ * off
        return ((k_ * l_).sum() + k_.sum() * l_.sum() / ((n - 1) * (n - 2))
                - 2 / (n - 2) * k_.sum(1) @ l_.sum(1)) / (n * (n - 3))

    Kr, Lr = a @ a.T, b @ b.T
    out["cka_debiased"] = hsic_u(Kr, Lr) / np.sqrt(hsic_u(Kr, Kr) * hsic_u(Lr, Lr))
    ga, gb = _np_unit(a) @ _np_unit(a).T, _np_unit(b) @ _np_unit(b).T
    np.fill_diagonal(ga, -np.inf)
    np.fill_diagonal(gb, -np.inf)
    na, nb = np.argsort(-ga, 1)[:, :k], np.argsort(-gb, 1)[:, :k]
    out["mknn"] = np.mean([len(set(na[i]) & set(nb[i])) / k for i in range(n)])
    idx = np.arange(n)
    out["retrieval_top1"] = ((c.argmax(1) == idx).mean() + (c.argmax(0) == idx).mean()) / 2
    return out


# ------------------------------------------------------------------ structure
def test_table_columns_labels_and_n():
    x, y = _paired()
    df = compare(x, y, layers=["emb", "b1", "b2"], n_boot=20)
    assert tuple(df.columns) == COLUMNS
    assert list(df.metric.unique()) == list(METRICS)
    assert set(df.layer) == {"emb", "b1", "b2"}
    assert (df.n == 60).all()
    assert np.isfinite(df[["value", "baseline", "ci_low", "ci_high"]].to_numpy()).all()


def test_batched_equals_per_layer_and_naive_reference():
    x, y = _paired(L=4, n=40, d=16, seed=1)
    df = compare(x, y, n_boot=0, k=5)
    for layer in range(4):
        single = compare(x[layer : layer + 1], y[layer : layer + 1], n_boot=0, k=5)
        ref = _np_metrics(x[layer].numpy(), y[layer].numpy(), k=5)
        for m in METRICS:
            assert _values(df, m)[layer] == pytest.approx(_values(single, m)[0], abs=1e-6)
            assert _values(df, m)[layer] == pytest.approx(ref[m], abs=1e-5), m


def test_large_n_uses_block_symmetric_gram_and_still_matches():
    # n >= 1024 takes the block-triangular Gram path
    x, y = _paired(L=1, n=1100, d=12, seed=2)
    df = compare(x, y, metrics=("cka", "cka_debiased", "mknn"), n_boot=0, k=5)
    ref = _np_metrics(x[0].numpy(), y[0].numpy(), k=5)
    for m in ("cka", "cka_debiased", "mknn"):
        assert _values(df, m)[0] == pytest.approx(ref[m], abs=1e-5), m


def test_helpers_match_compare():
    x, y = _paired(seed=3)
    df = compare(x, y, metrics=hc.ALL_METRICS, n_boot=0, k=5)
    for name, fn in [
        ("cos_paired", cos_paired), ("cos_unpaired", cos_unpaired), ("cos_adjusted", cos_adjusted),
        ("cos_centered", cos_centered), ("cka", cka), ("cka_debiased", cka_debiased),
        ("retrieval_top1", retrieval_top1),
    ]:
        np.testing.assert_allclose(fn(x, y).numpy(), _values(df, name), atol=1e-6)
    np.testing.assert_allclose(mknn(x, y, k=5).numpy(), _values(df, "mknn"), atol=1e-6)
    for d, name in (("x2y", "retrieval_x2y"), ("y2x", "retrieval_y2x")):
        np.testing.assert_allclose(retrieval_top1(x, y, direction=d).numpy(), _values(df, name))
    # adjusted = paired - unpaired; both directions average to top1
    np.testing.assert_allclose(
        _values(df, "cos_adjusted"), _values(df, "cos_paired") - _values(df, "cos_unpaired"), atol=1e-6
    )
    np.testing.assert_allclose(
        _values(df, "retrieval_top1"), (_values(df, "retrieval_x2y") + _values(df, "retrieval_y2x")) / 2
    )


# ------------------------------------------------------------------ invariances
@pytest.mark.parametrize("metric", ["cka", "cka_debiased"])
@pytest.mark.parametrize("side", ["x", "y"])
def test_cka_invariant_to_rotation_scaling_translation(metric, side):
    x, y = _paired(n=50, d=20, seed=4, dy=12)  # two towers: different widths
    fn = cka if metric == "cka" else cka_debiased
    base = fn(x, y)
    t = x if side == "x" else y
    d = t.shape[-1]
    variants = [
        t @ _orth(d, 5),  # orthogonal rotation
        3.7 * t,  # isotropic scaling
        t + 5.0 * torch.randn(1, 1, d, generator=_gen(6)),  # translation
    ]
    for v in variants:
        out = fn(v, y) if side == "x" else fn(x, v)
        torch.testing.assert_close(out, base, atol=2e-5, rtol=0)


def test_cosine_metrics_invariant_to_positive_item_scaling():
    x, y = _paired(n=50, seed=7)
    s = torch.rand(3, 50, 1, generator=_gen(8)) * 10 + 0.1
    names = ("cos_adjusted", "cos_paired", "cos_unpaired", "retrieval_top1", "mknn")
    a = compare(x, y, metrics=names, n_boot=0, k=5)
    b = compare(x * s, y, metrics=names, n_boot=0, k=5)
    c = compare(x, y / s, metrics=names, n_boot=0, k=5)
    for m in names:
        np.testing.assert_allclose(_values(b, m), _values(a, m), atol=1e-6)
        np.testing.assert_allclose(_values(c, m), _values(a, m), atol=1e-6)


def test_identical_inputs_score_one():
    x, _ = _paired(n=80, d=32, seed=9)
    df = compare(x, x.clone(), n_boot=20)
    for m in ("cka", "cka_debiased"):
        np.testing.assert_allclose(_values(df, m), 1.0, atol=1e-5)
    for m in ("retrieval_top1", "mknn"):
        np.testing.assert_array_equal(_values(df, m), 1.0)


# ------------------------------------------------------------------ chance levels
def test_independent_inputs_near_baselines():
    L, n, d, k = 3, 400, 64, 10
    g = _gen(10)
    x, y = torch.randn(L, n, d, generator=g), torch.randn(L, n, d, generator=g)
    df = compare(x, y, k=k, n_boot=0)
    null = permutation_null(x, y, ("cka",), n_perm=30, seed=1)
    # cosine of independent isotropic vectors: sd 1/sqrt(d) per pair, 1/sqrt(n d) for the mean
    for m in ("cos_adjusted", "cos_centered"):
        assert np.all(np.abs(_values(df, m)) < 5 / math.sqrt(n * d))
    # biased CKA: within 5 permutation-null SDs of its analytic (permutation-mean) baseline
    sd = null.groupby("layer").value.std().to_numpy()
    base = df[df.metric == "cka"].baseline.to_numpy()
    assert np.all(np.abs(_values(df, "cka") - base) < 5 * sd)
    # debiased CKA: null SD ~ sqrt(2)/n
    assert np.all(np.abs(_values(df, "cka_debiased")) < 5 * math.sqrt(2) / n)
    # mknn: overlap ~ hypergeometric with mean k^2/(n-1); SE of the mean over n items
    p = k / (n - 1)
    assert np.all(np.abs(_values(df, "mknn") - p) < 5 * math.sqrt(p * (1 - p) / (k * n)))
    # retrieval: 2n Bernoulli(1/n) hits
    assert np.all(np.abs(_values(df, "retrieval_top1") - 1 / n) < 5 * math.sqrt(1 / n / (2 * n)))
    assert df[df.metric == "mknn"].baseline.iloc[0] == pytest.approx(p)
    assert df[df.metric == "retrieval_top1"].baseline.iloc[0] == pytest.approx(1 / n)


def test_debiased_cka_near_zero_for_high_dim_noise_where_biased_is_not():
    g = _gen(11)
    n, d = 64, 2048
    x, y = torch.randn(2, n, d, generator=g), torch.randn(2, n, d, generator=g)
    df = compare(x, y, metrics=("cka", "cka_debiased"), n_boot=20)
    assert np.all(_values(df, "cka") > 0.5)  # biased: ~ 1 / (1 + n/d) -> near 1
    assert np.all(np.abs(_values(df, "cka_debiased")) < 5 * math.sqrt(2) / n)
    # the analytic chance level of biased CKA tracks its inflation
    assert np.all(df[df.metric == "cka"].baseline > 0.5)


def test_analytic_baselines_equal_permutation_means():
    x, y = _paired(L=2, n=30, d=8, noise=3.0, seed=12)
    P = 400
    null = permutation_null(x, y, METRICS, n_perm=P, seed=3, k=4)
    df = compare(x, y, METRICS, n_boot=0, k=4)
    for m in METRICS:
        g = null[null.metric == m].groupby("layer").value
        mean, se = g.mean().to_numpy(), g.std().to_numpy() / math.sqrt(P)
        base = df[df.metric == m].sort_values("layer").baseline.to_numpy()
        assert np.all(np.abs(mean - base) < 5 * se + 1e-9), m


# ------------------------------------------------------------------ permutation nulls
def test_permutation_null_equals_explicitly_shuffled_inputs():
    x, y = _paired(L=2, n=40, d=16, seed=13)
    names = hc.ALL_METRICS
    for csls in (False, True):
        null = permutation_null(x, y, names, n_perm=3, seed=5, k=4, csls=csls, csls_k=5)
        perms = permutations(40, 3, 5)
        for j, p in enumerate(perms):
            direct = compare(x, y[:, p], names, n_boot=0, k=4, csls=csls, csls_k=5)
            for m in names:
                got = null[(null.metric == m) & (null.perm == j)].sort_values("layer").value.to_numpy()
                np.testing.assert_allclose(got, _values(direct, m), atol=1e-5, err_msg=f"{m} csls={csls}")


def test_permutation_baseline_below_value_for_paired_data():
    x, y = _paired(n=80, noise=0.5, seed=14)
    df = compare(x, y, baseline="permutation", n_perm=5, n_boot=0, k=5)
    assert (df.value > df.baseline).all(), df


def test_max_over_layers_null():
    x, y = _paired(L=5, n=50, noise=0.5, seed=15)
    for m in ("cos_adjusted", "cka_debiased", "mknn", "retrieval_top1"):
        res = max_over_layers_null(x, y, m, n_perm=50, seed=2, k=5)
        assert res.null.shape == (50,)
        assert res.null.mean() >= res.per_layer_null_mean.max() - 1e-9
        # same permutations as permutation_null -> the maximum of its per-layer rows
        null = permutation_null(x, y, m, n_perm=50, seed=2, k=5)
        np.testing.assert_allclose(res.null, null.groupby("perm").value.max().to_numpy(), atol=1e-7)
        assert res.observed > res.null.max()
        assert res.p_value == pytest.approx(1 / 51)
    # independent data: the maximum over layers is not significant by construction
    g = _gen(16)
    xi, yi = torch.randn(5, 50, 24, generator=g), torch.randn(5, 50, 24, generator=g)
    res = max_over_layers_null(xi, yi, "cos_adjusted", n_perm=99, seed=0)
    assert res.p_value > 0.01


# ------------------------------------------------------------------ CSLS
def test_csls_fixes_hubness():
    n, d, c = 100, 64, 1.0
    g = _gen(17)
    v = torch.randn(n, d, generator=g) / math.sqrt(d)
    h = torch.randn(d, generator=g)
    h = h / h.norm()
    x = v + c * h  # every query shares direction h
    y = v + 0.5 * torch.randn(n, d, generator=g) / math.sqrt(d)
    y[0] = h  # ... and candidate 0 is h itself: a hub
    x, y = x[None], y[None]
    nearest = (unit(x, "x") @ unit(y, "y").transpose(1, 2)).argmax(-1)
    assert (nearest == 0).float().mean() > 0.5  # the hub attracts most queries under cosine
    cos_acc = retrieval_top1(x, y, direction="x2y").item()
    csls_acc = retrieval_top1(x, y, csls=True, csls_k=10, direction="x2y").item()
    assert cos_acc < 0.5
    assert csls_acc > 0.9
    df = compare(x, y, metrics=("retrieval_top1",), csls=True, n_boot=50)
    assert df.baseline.iloc[0] == pytest.approx(1 / n)


# ------------------------------------------------------------------ bootstrap CIs
def test_ci_contains_value_and_is_deterministic():
    x, y = _paired(n=70, noise=1.0, seed=18)
    a = compare(x, y, n_boot=100, seed=3, metrics=hc.ALL_METRICS, k=5)
    b = compare(x, y, n_boot=100, seed=3, metrics=hc.ALL_METRICS, k=5)
    c = compare(x, y, n_boot=100, seed=4, metrics=hc.ALL_METRICS, k=5)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.ci_low, c.ci_low)
    assert (a.ci_low <= a.value + 1e-12).all() and (a.value <= a.ci_high + 1e-12).all()
    assert (a.ci_high > a.ci_low).all()
    wider = compare(x, y, n_boot=100, seed=3, ci=0.99, metrics=("cos_adjusted", "cka"))
    narrow = a[a.metric.isin(["cos_adjusted", "cka"])].reset_index(drop=True)
    assert ((wider.ci_high - wider.ci_low) >= (narrow.ci_high - narrow.ci_low) - 1e-12).all()


def test_ci_width_shrinks_with_n():
    small, big = _paired(L=1, n=50, seed=19), _paired(L=1, n=800, seed=19)
    ws = compare(*small, metrics=("cos_adjusted", "cka"), n_boot=100)
    wb = compare(*big, metrics=("cos_adjusted", "cka"), n_boot=100)
    assert ((wb.ci_high - wb.ci_low) < (ws.ci_high - ws.ci_low)).all()


def test_cka_bootstrap_is_exact_recompute_on_resampled_items():
    """Weighted Gram formula == CKA of the explicitly resampled items (biased form)."""
    x, y = _paired(L=2, n=30, d=10, seed=20)
    w = boot_weights(30, 4, seed=1, device=x.device)  # [4, n] multiplicities
    xc, yc = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    Wt = torch.cat([torch.ones(30, 1), w.T], 1)
    out = cka_chunk(sym_gram(xc), sym_gram(yc), Wt, None, {"cka"})["cka"][0]
    for b in range(4):
        idx = torch.repeat_interleave(torch.arange(30), w[b].long())
        torch.testing.assert_close(out[:, b + 1], cka(x[:, idx], y[:, idx]), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ centring and clamping
def test_centering_options():
    x, y = _paired(seed=21)
    df = compare(x, y, metrics=("cos_adjusted", "cos_centered"), n_boot=0)
    own = cos_centered(x, y, x_mean=x.mean(1), y_mean=y.mean(1))
    np.testing.assert_allclose(own.numpy(), _values(df, "cos_centered"), atol=1e-6)
    # centring switch: cos_adjusted on centred states == cos_centered
    cen = compare(x, y, metrics=("cos_adjusted", "cos_centered"), center=True, n_boot=0)
    np.testing.assert_allclose(_values(cen, "cos_adjusted"), _values(df, "cos_centered"), atol=1e-6)
    np.testing.assert_allclose(_values(cen, "cos_centered"), _values(df, "cos_centered"), atol=1e-6)
    # means fitted on another split: the value no longer depends on this batch's mean
    xo, yo = _paired(seed=22)
    fixed = compare(x, y, metrics=("cos_centered",), x_mean=xo.mean(1), y_mean=yo.mean(1), n_boot=0)
    manual = cos_adjusted(x - xo.mean(1, keepdim=True), y - yo.mean(1, keepdim=True))
    np.testing.assert_allclose(_values(fixed, "cos_centered"), manual.numpy(), atol=1e-6)
    again = compare(x, y, metrics=("cos_centered",), center=True, x_mean=xo.mean(1), y_mean=yo.mean(1), n_boot=0)
    np.testing.assert_allclose(_values(again, "cos_centered"), manual.numpy(), atol=1e-6)


def test_clamp_tames_a_massive_dimension():
    g = _gen(23)
    x, y = torch.randn(1, 100, 32, generator=g), torch.randn(1, 100, 32, generator=g)
    x[..., 0] += 50.0
    y[..., 0] += 50.0  # one massive dimension shared by all items
    raw = cos_unpaired(x, y).item()
    clamped = compare(x, y, metrics=("cos_unpaired",), clamp=3.0, n_boot=0).value.iloc[0]
    assert raw > 0.9
    assert clamped < raw - 0.3
    out = hc.clamp_outliers(x, 3.0)
    assert out.shape == x.shape and out.abs().max() < 50


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x=torch.randn(2, 1, 4), y=torch.randn(2, 1, 4)), r"n \(number of paired items\) must be >= 2.*n=1"),
        (dict(x=torch.randn(2, 3, 4), y=torch.randn(2, 3, 4), metrics=("cka_debiased",)), r"n >= 4.*n=3"),
        (dict(x=torch.randn(2, 8, 4), y=torch.randn(2, 8, 4), metrics=("mknn",), k=8), r"k must be in \[1, 7\].*k=8"),
        (dict(x=torch.randn(2, 8, 4), y=torch.randn(3, 8, 4)), r"x \(2, 8, 4\) and y \(3, 8, 4\)"),
        (dict(x=torch.randn(2, 8, 4), y=torch.randn(2, 9, 4)), r"same number of layers and items"),
        (dict(x=torch.randn(2, 8, 4), y=torch.randn(2, 8, 5)), r"same width d.*\(2, 8, 4\).*\(2, 8, 5\)"),
        (dict(x=torch.randn(8, 4, 2, 1), y=torch.randn(8, 4)), r"x must have shape \[layer, n, d\]"),
        (dict(x=torch.randn(2, 8, 4), y=torch.randn(2, 8, 4), metrics=("cosine",)), r"unknown \['cosine'\]"),
        (dict(x=torch.randn(2, 8, 4), y=torch.randn(2, 8, 4), ci=95), r"ci must be a coverage in \(0, 1\)"),
        (dict(x=torch.randn(2, 8, 4), y=torch.randn(2, 8, 4), layers=[0]), r"one label per layer \(2\)"),
        (dict(x=torch.randn(2, 8, 4), y=torch.randn(2, 8, 4), clamp=-1.0), r"clamp must be a positive"),
        (dict(x=torch.randn(2, 8, 4), y=torch.randn(2, 8, 4), csls=True, csls_k=9), r"csls_k must be in \[1, 8\]"),
        (dict(x=torch.randn(2, 8, 4), y=torch.randn(2, 8, 4), n_boot=-1), r"n_boot must be >= 0"),
        (dict(x=torch.randn(2, 8, 4), y=torch.randn(2, 8, 4), x_mean=torch.zeros(3), metrics=("cos_centered",)),
         r"x_mean must have shape"),
    ],
)
def test_bad_inputs_raise_informative_errors(kwargs, match):
    kwargs.setdefault("k", 3)  # small n: keep mknn's k valid unless k is the point
    with pytest.raises(ValueError, match=match):
        compare(**kwargs)


def test_non_finite_inputs_name_the_count():
    x, y = torch.randn(2, 8, 4), torch.randn(2, 8, 4)
    x[0, 1, 2] = float("nan")
    x[1, 3, 0] = float("inf")
    with pytest.raises(ValueError, match=r"x contains 2 non-finite values"):
        compare(x, y, k=3)
    with pytest.raises(ValueError, match=r"y contains 1 non-finite"):
        compare(y, torch.where(x.isnan(), x, y), k=3)


def test_degenerate_inputs_raise_instead_of_nan():
    x, y = torch.randn(2, 8, 4), torch.randn(2, 8, 4)
    z = x.clone()
    z[1, 2] = 0.0
    with pytest.raises(ValueError, match=r"zero vectors"):
        compare(z, y, metrics=("cos_adjusted",))
    const = torch.ones(2, 8, 4)
    with pytest.raises(ValueError, match=r"cka is undefined at layers \(0-based\) \[0, 1\]"):
        compare(const, y, metrics=("cka",))
    with pytest.raises(ValueError, match=r"centred x has 16 zero vectors"):
        compare(const, y, metrics=("cos_centered",))


def test_two_towers_allowed_for_cka_and_mknn_only():
    x, y = _paired(n=40, d=20, dy=8, seed=24)
    df = compare(x, y, metrics=("cka", "cka_debiased", "mknn"), n_boot=10, k=5)
    assert np.isfinite(df.value).all()
    with pytest.raises(ValueError, match=r"\['retrieval_top1'\].*same width"):
        compare(x, y, metrics=("cka", "retrieval_top1"))


def test_accepts_numpy_and_half_precision_and_2d():
    x, y = _paired(L=1, n=30, seed=25)
    a = compare(x, y, n_boot=0, k=5)
    b = compare(x.numpy(), y.numpy().astype(np.float64), n_boot=0, k=5)
    c = compare(x[0], y[0], n_boot=0, k=5)
    np.testing.assert_allclose(a.value, b.value, atol=1e-6)
    np.testing.assert_allclose(a.value, c.value, atol=1e-6)
    h = compare(x.half(), y.half(), n_boot=0, k=5)
    assert np.isfinite(h.value).all()
