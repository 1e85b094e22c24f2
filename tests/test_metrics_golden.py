"""The hub.metrics package reproduces the old flat comparator (hub/compare.py before the
split) to 1e-6 on every case of tests/metrics_golden_cases.py: values, baselines, CIs,
permutation nulls. The golden table was written by the old code (see that module)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import hub.metrics as hm
from metrics_golden_cases import cases

GOLDEN = Path(__file__).parent / "data" / "compare_golden.csv"


def test_package_reproduces_the_old_comparator():
    old = pd.read_csv(GOLDEN)
    new = cases(hm)
    key = ["case", "metric", "layer", "column"]
    old["layer"], new["layer"] = old.layer.astype(int), new.layer.astype(int)
    merged = old.merge(new, on=key, how="outer", suffixes=("_old", "_new"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"].head()
    a, b = merged.value_old.to_numpy(float), merged.value_new.to_numpy(float)
    assert (np.isnan(a) == np.isnan(b)).all()
    worst = np.nanmax(np.abs(a - b))
    assert worst <= 1e-6, merged.assign(diff=np.abs(a - b)).sort_values("diff").tail()
