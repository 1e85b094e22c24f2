"""A metric with no value at one layer: NaN (or one clear error), never a crash of the whole run.

The case that found it: ``experiment=similarity model=tiny_llama modality.max_items=24``. At
layer 0 every sentence but one ends in the same token, so all items but one share a state. The
unbiased HSIC of such a representation with itself is exactly 0: no two disjoint pairs of
distinct items exist. Debiased CKA is 0/0 there. In fp32 the self-HSIC comes out as noise of
either sign, about 1e-7 of sum(K^2). Before the fix it gave a garbage value or stopped the run.
"""
import numpy as np
import pandas as pd
import pytest
import torch

from hub.metrics import compare
from hub.pairs import compare_states
from tests.helpers import run_cfg

METRIC = {"names": ["cka", "cka_debiased", "mknn"], "k": 3, "csls": False, "csls_k": 3, "n_boot": 20, "ci": 0.95}


def _all_but_one(n: int = 24, d: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[layer=3, n, d]`` x and y; at layer 1 all items but the last share one state."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(3, n, d, generator=g), torch.randn(3, n, d, generator=g)
    for t in (x, y):
        t[1, :-1] = t[1, 0]
    return x, y


@pytest.mark.parametrize("seed", range(6))
def test_debiased_cka_is_nan_where_all_items_but_one_share_a_state(seed):
    x, y = _all_but_one(seed=seed)
    df = compare(x, y, metrics=("cka", "cka_debiased"), n_boot=20, undefined="nan")
    deb = df[df.metric == "cka_debiased"].set_index("layer")
    assert np.isnan(deb.loc[1, ["value", "ci_low", "ci_high"]].astype(float)).all()
    assert np.isfinite(deb.loc[[0, 2], "value"]).all()
    assert np.isfinite(df[df.metric == "cka"]["value"]).all()  # biased CKA is defined there (rank 1)
    with pytest.raises(ValueError, match=r"cka_debiased is undefined at layers \(0-based\) \[1\]: the unbiased HSIC"):
        compare(x, y, metrics=("cka_debiased",), n_boot=0)


def test_undefined_option_is_checked():
    x, y = _all_but_one()
    with pytest.raises(ValueError, match="undefined must be 'raise' or 'nan'"):
        compare(x, y, metrics=("cka",), undefined="skip")


def test_paired_path_keeps_the_other_metrics_and_marks_the_cell_nan():
    x, y = _all_but_one()
    df = compare_states(x.transpose(0, 1), y.transpose(0, 1), METRIC, [0, 1, 2])
    assert df.attrs["constant_layers"] == []
    bad = df[df["value"].isna()]
    assert list(zip(bad.metric, bad.layer)) == [("cka_debiased", 1)]
    assert len(df) == 9


def test_similarity_run_finishes_and_counts_the_undefined_values(tmp_path):
    """The reported command: finishes, results.csv has no NaN, the report counts what is left out."""
    report = run_cfg(["experiment=similarity", "model=tiny_llama", "modality.max_items=24", "cache.enabled=false"],
                     tmp_path)
    text = report.read_text()
    assert "## Undefined metric values" in text
    assert "10 metric value(s) are undefined and left out of results.csv" in text
    assert "cka_debiased: 10 at layer(s) 0" in text
    res = pd.read_csv(tmp_path / "results.csv")
    assert np.isfinite(res["value"]).all()
    deb, cka = res[res.metric == "cka_debiased"], res[res.metric == "cka"]
    assert len(deb) == len(cka) - 10
    assert not ((deb.task == "sentences") & (deb.layer == 0)).any() and ((cka.task == "sentences") & (cka.layer == 0)).sum() == 10
