"""Cases for the comparator's golden test: fixed random data through every entry point.

``python tests/metrics_golden_cases.py OUT.csv`` with the *old* flat ``hub.compare`` on the
path (PYTHONPATH=/path/to/old/checkout) wrote tests/data/compare_golden.csv before the
comparator became the hub.metrics package; tests/test_metrics_golden.py reruns the same cases
on the package and demands equality to 1e-6.
"""
from __future__ import annotations

import importlib
import sys

import pandas as pd
import torch

OLD_ALL = ("cos_adjusted", "cos_centered", "cka", "cka_debiased", "mknn", "retrieval_top1",
           "cos_paired", "cos_unpaired", "retrieval_x2y", "retrieval_y2x")


def data(L: int, n: int, d: int, seed: int, dy: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``x, y: [L, n, d]``: low-rank structure + offset (anisotropic), y = noisy (map of) x."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(L, n, 16, generator=g)
    x = z @ torch.randn(L, 16, d, generator=g) / 4 + torch.randn(L, n, d, generator=g) + 3.0 * torch.randn(L, 1, d, generator=g)
    if dy is None:
        y = x + 2.0 * torch.randn(L, n, d, generator=g)
    else:
        y = x @ torch.randn(d, dy, generator=g) / d**0.5 + 2.0 * torch.randn(L, n, dy, generator=g)
    return x, y


def cases(mod) -> pd.DataFrame:
    """Every case as one long table: case, metric, layer, column, value."""
    x, y = data(3, 80, 32, 0)
    x2, y2 = data(2, 60, 24, 1, dy=40)
    x3, y3 = data(1, 1100, 48, 2)  # n >= 1024: block-symmetric Gram and grouped top-k paths
    tables = {
        "default": mod.compare(x, y, metrics=OLD_ALL, k=5),
        "csls": mod.compare(x, y, metrics=OLD_ALL, k=5, csls=True, csls_k=4, n_boot=50, seed=2),
        "center_clamp": mod.compare(x, y, metrics=OLD_ALL, k=7, center=True, clamp=2.5, n_boot=30),
        "perm_baseline": mod.compare(x, y, metrics=OLD_ALL, k=5, csls=True, baseline="permutation", n_perm=3, n_boot=10),
        "given_means": mod.compare(x, y, metrics=["cos_centered"], x_mean=x.mean((0, 1)), y_mean=y[:, :10].mean(1), n_boot=10),
        "n_boot_cka": mod.compare(x, y, metrics=["cka", "cka_debiased"], n_boot=30, n_boot_cka=25, seed=9),
        "two_towers": mod.compare(x2, y2, metrics=["cka", "cka_debiased", "mknn"], k=4, n_boot=40),
        "large_n": mod.compare(x3, y3, metrics=OLD_ALL, k=12, n_boot=30, csls=True),
    }
    null = mod.permutation_null(x, y, metrics=OLD_ALL, n_perm=4, k=5, csls=True)
    rows = []
    for case, df in tables.items():
        long = df.rename(columns={"value": "val"}).melt(
            id_vars=["metric", "layer"], value_vars=["val", "baseline", "ci_low", "ci_high"], var_name="column")
        rows.append(long.assign(case=case))
    rows.append(null.assign(case="perm_null", column=null.perm.map(lambda p: f"perm{p}")).drop(columns="perm"))
    m = mod.max_over_layers_null(x, y, "cka_debiased", n_perm=10)
    rows.append(pd.DataFrame({"case": "max_null", "metric": "cka_debiased", "layer": 0, "column": "p_value",
                              "value": [m.p_value]}))
    return pd.concat(rows, ignore_index=True)[["case", "metric", "layer", "column", "value"]]


if __name__ == "__main__":
    cases(importlib.import_module(sys.argv[2] if len(sys.argv) > 2 else "hub.compare")).to_csv(
        sys.argv[1], index=False, float_format="%.10g")
