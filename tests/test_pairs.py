"""The one paired path (hub.pairs), layer selection (hub.layers) and the shared statistics."""
import numpy as np
import pytest
import torch

from hub.contract import LensPrompts, PairedSet, Side
from hub.layers import select_layers
from hub.pairs import capture_side, compare_paired, compare_states
from hub.stats import bootstrap_mean_ci, mean_ci
from hub.models.tiny import tiny_model

METRIC = {"names": ["cos_adjusted", "cka", "mknn"], "k": 3, "csls": False, "csls_k": 3, "n_boot": 20, "ci": 0.95}


def _states(n=8, layers=4, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, layers, d, generator=g), torch.randn(n, layers, d, generator=g)


def test_constant_layers_are_left_out_and_listed_and_n_distinct_is_counted():
    x, y = _states()
    x[:, 0] = 1.0  # one state for every item (a shared token at the embedding layer)
    y[:, 2] = y[0, 2] + 1e-9 * torch.randn(8, 6)  # constant up to float noise
    x[:4, 3] = x[0, 3]  # half the items share a state: kept, n_distinct says so
    df = compare_states(x, y, METRIC, [0, 5, 10, 15])
    assert df.attrs["constant_layers"] == [0, 10]
    assert sorted(df["layer"].unique()) == [5, 15]
    nd = df.groupby("layer")["n_distinct"].first()
    assert nd[5] == 8 and nd[15] == 5
    assert df["value"].notna().all()


def test_compare_states_rejects_all_constant_and_mismatched_states():
    x, y = _states()
    with pytest.raises(ValueError, match="at every layer one side has the same state"):
        compare_states(torch.ones_like(x), y, METRIC, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="one layer per label"):
        compare_states(x, y, METRIC, [0, 1, 2])
    with pytest.raises(ValueError, match="the same n"):
        compare_states(x, y[:5], METRIC, [0, 1, 2, 3])


def test_compare_paired_equals_compare_states_on_its_captures_and_reuses_sides():
    hm = tiny_model("llama")
    words = ["cat", "dog", "house", "tree", "bread", "water"]
    a, b = Side(words, "text", "last"), Side([w.upper() for w in words], "text", "mean")
    cache = {}
    df = compare_paired(hm, PairedSet("p", a, b, ids={"lang": "xx"}), METRIC, cache=cache)
    x, y = capture_side(hm, a), capture_side(hm, b)
    ref = compare_states(x, y, METRIC, hm.check_layers("all"))
    cols = ["metric", "layer", "value", "ci_low", "ci_high", "n_distinct"]
    np.testing.assert_allclose(df[cols[2:]].to_numpy(float), ref[cols[2:]].to_numpy(float), rtol=1e-6)
    assert (df["lang"] == "xx").all() and (df["pair"] == "p").all()
    assert len(cache) == 2
    side = Side(words, "text", "last", extra=[{} for _ in words])  # per-item tensors: keyed by the object
    k = len(cache)
    capture_side(hm, side, cache=cache)
    capture_side(hm, side, cache=cache)
    assert len(cache) == k + 1


def test_select_layers_one_parser_for_every_model_kind():
    assert select_layers("all", 3) == [0, 1, 2, 3] and select_layers(None, 2) == [0, 1, 2]
    assert select_layers(2, 3) == [2] and select_layers([3, 0], 3) == [3, 0]
    with pytest.raises(IndexError, match=r"layer 4 is out of range for m: valid layers are 0..3"):
        select_layers([4], 3, "m")
    with pytest.raises(ValueError, match="duplicates"):
        select_layers([1, 1], 3)
    with pytest.raises(IndexError):
        select_layers([0.5], 3)  # a fraction only where asked for
    assert select_layers([0.44, 8, 0.45], 18, fractions=True) == [8]
    with pytest.raises(ValueError, match="fraction of depth"):
        select_layers([1.5], 18, fractions=True)


def test_bootstrap_mean_ci_resamples_every_column_alike_and_mean_ci():
    x = np.arange(20.0)[:, None] * np.array([1.0, 2.0])  # column 2 = 2 x column 1
    m, lo, hi = bootstrap_mean_ci(x, n_boot=200, seed=3)
    np.testing.assert_allclose(m, [9.5, 19.0])
    np.testing.assert_allclose(lo[1], 2 * lo[0]) and np.testing.assert_allclose(hi[1], 2 * hi[0])
    assert lo[0] < 9.5 < hi[0]
    m, lo, hi = mean_ci(np.array([[1.0], [3.0]]))
    assert m[0] == 2.0 and lo[0] < 2.0 < hi[0]


def test_lens_prompts_check_their_sets():
    LensPrompts(["a", "b"], [[frozenset({1}), frozenset({2})]] * 2, ["x", "y"], ["i", "j"])
    with pytest.raises(ValueError, match="one per name"):
        LensPrompts(["a"], [[frozenset({1})]], ["x", "y"], ["i"])
    with pytest.raises(ValueError, match="2 prompts but 1"):
        LensPrompts(["a", "b"], [[frozenset({1})]], ["x"], ["i", "j"])
