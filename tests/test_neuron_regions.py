"""Overlap of LAPE neuron sets with parameter regions: share against a dense reference, self = 1,
disjoint = 0, partial overlap, and the errors."""
import pytest
import torch

from hub.errors import UserError
from hub.models.tiny import tiny_model
from hub.neuron_regions import neuron_overlap, neuron_parameters, region_neuron_share
from hub.regions import Mask, accumulate_importance, build_regions


@pytest.fixture(scope="module")
def hm():
    return tiny_model("llama")


def region_of(hm, neurons: torch.Tensor, name: str = "r") -> Mask:
    """A region made of exactly the parameters the neurons ``[L, n]`` own."""
    named = dict(hm.model.named_parameters())
    index, shapes = {}, {}
    for layer, parts in enumerate(neuron_parameters(hm)):
        js = neurons[layer].nonzero().flatten()
        assert sorted(p.split(".")[-2] for p in parts) == ["down_proj", "gate_proj", "up_proj"]
        for pname in parts:  # the neuron is a row of gate/up and a column of down, written out here
            axis = 1 if "down_proj" in pname else 0
            shape = tuple(named[pname].shape)
            dense = torch.zeros(shape, dtype=torch.bool)
            if axis == 0:
                dense[js, :] = True
            else:
                dense[:, js] = True
            index[pname], shapes[pname] = dense.flatten().nonzero().flatten(), shape
    return Mask(name, index, shapes)


def some_neurons(hm, seed: int) -> torch.Tensor:
    L, n = hm.n_layers, hm.blocks[0].mlp.up_proj.out_features
    g = torch.Generator().manual_seed(seed)
    return torch.rand(L, n, generator=g) < 0.1


def test_share_matches_a_dense_reference(hm):
    imp = accumulate_importance(hm, {"a": "The cat sat on the mat. " * 8, "b": "Le chat dort. " * 8},
                                tokens=64, window=32, batch_size=2)
    rs = build_regions(imp, k=0.05)
    for name in ("core", "random", "mono:a"):
        mask = rs[name]
        share = region_neuron_share(hm, mask)
        for layer, parts in enumerate(neuron_parameters(hm)):
            count, owned = 0, 0
            for pname in parts:
                axis = 1 if "down_proj" in pname else 0
                d = mask.dense(pname)
                count = count + (d.sum(1) if axis == 0 else d.sum(0)).double()
                owned += d.shape[1 - axis]
            torch.testing.assert_close(share[layer], (count / owned).float())
        assert 0 <= float(share.min()) and float(share.max()) <= 1
        o = neuron_overlap(some_neurons(hm, 0), share)
        assert 0 <= o["overlap"] <= 1 and o["enrichment"] >= 0


def test_self_is_one_disjoint_is_zero_partial_is_half(hm):
    N = some_neurons(hm, 1)
    share = region_neuron_share(hm, region_of(hm, N))
    same = neuron_overlap(N, share)
    assert same["overlap"] == 1.0 and same["share_in"] == pytest.approx(1.0)
    assert same["enrichment"] == pytest.approx(1 / same["density"])
    other = some_neurons(hm, 2) & ~N
    assert neuron_overlap(N, region_neuron_share(hm, region_of(hm, other)))["overlap"] == 0.0
    assert neuron_overlap(N, region_neuron_share(hm, region_of(hm, other)))["share_in"] == 0.0
    idx = N.flatten().nonzero().flatten()
    half = torch.zeros_like(N.flatten())
    half[idx[: len(idx) // 2]] = True
    part = neuron_overlap(N, region_neuron_share(hm, region_of(hm, half.view_as(N))))
    assert part["overlap"] == pytest.approx((len(idx) // 2) / len(idx))
    assert part["chance"] == pytest.approx(len(idx) / N.numel())
    empty = neuron_overlap(torch.zeros_like(N), share)
    assert empty["n_neurons"] == 0 and empty["overlap"] != empty["overlap"]  # NaN


def test_errors(hm):
    N = some_neurons(hm, 1)
    mask = region_of(hm, N)
    gate = next(n for n in mask.shapes if "gate_proj" in n)
    partial = Mask("attn_only", {n: i for n, i in mask.index.items() if n != gate},
                   {n: s for n, s in mask.shapes.items() if n != gate})
    with pytest.raises(UserError, match="does not cover"):
        region_neuron_share(hm, partial)
    with pytest.raises(UserError, match="gated"):
        neuron_parameters(tiny_model("gpt2"))
    with pytest.raises(ValueError, match="differ"):
        neuron_overlap(N[:1], region_neuron_share(hm, mask))
