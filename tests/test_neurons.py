"""MLP neurons: firing counts against a reference, LAPE selection on constructed probabilities,
deactivation equals zeroing the weights, neuron files, and the experiment end to end."""
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from hub.cli import CONF_DIR, run_job
from hub.models.tiny import tiny_model
from hub.neurons import (
    activation_modules,
    deactivated,
    firing_counts,
    lape_select,
    load_neurons,
    save_neurons,
)

TEXTS = ["The cat sat on the mat.", "Le chat", "5+3=8 and one two three", "猫在垫子上。"]


@pytest.fixture(scope="module", params=["llama", "gemma3", "gpt2"])
def hm(request):
    return tiny_model(request.param)


def reference_counts(hm, ids):
    """Run each text alone (no padding) and record every activation output."""
    acts = activation_modules(hm)
    total = None
    for x in ids:
        seen = []
        hs = [a.register_forward_hook(lambda _m, _a, out: seen.append(out[0] > 0)) for a in acts]
        try:
            with torch.no_grad():
                hm.forward_batch(hm.collate([x]))
        finally:
            for h in hs:
                h.remove()
        c = torch.stack([s.sum(0) for s in seen]).long()  # [L, n]
        total = c if total is None else total + c
    return total


def test_firing_counts_match_one_by_one_and_ignore_padding(hm):
    ids = hm.tokenize(TEXTS)
    counts, n = firing_counts(hm, ids, batch_size=3)
    assert n == sum(len(x) for x in ids)
    assert counts.shape == (hm.n_layers, counts.shape[1])
    assert torch.equal(counts, reference_counts(hm, ids))


def test_lape_selects_the_constructed_specific_neurons():
    langs, L, n = 3, 2, 50
    g = torch.Generator().manual_seed(0)
    p = 0.3 + 0.05 * torch.rand(langs, L, n, generator=g)  # unspecific: all languages alike
    p[0, 0, 7] = 0.9
    p[1:, 0, 7] = 0.01  # neuron (0, 7) fires on language 0 only
    p[1, 1, 3] = p[2, 1, 3] = 0.9
    p[0, 1, 3] = 0.01  # neuron (1, 3) fires on languages 1 and 2
    masks, ent, thr = lape_select(p, bottom_fraction=2 / (L * n), threshold=0.5)
    assert thr == 0.5
    assert masks.sum() == 3
    assert masks[0, 0, 7] and masks[1, 1, 3] and masks[2, 1, 3]
    assert ent[0, 7] < ent[1, 3] < ent[0, 0]  # one language < two languages < all alike


def test_lape_threshold_removes_rare_low_entropy_neurons():
    p = torch.full((2, 1, 4), 0.4)
    p[0, 0, 0], p[1, 0, 0] = 0.02, 0.0  # low entropy but rarely firing
    masks, _, _ = lape_select(p, bottom_fraction=0.25, threshold=0.3)
    assert not masks.any()
    with pytest.raises(ValueError, match="expected \\[languages >= 2"):
        lape_select(p[:1])


def test_deactivation_equals_zeroing_the_down_projection_inputs(hm):
    """Zeroing neuron j of layer k = removing column j of that layer's down projection."""
    ids = hm.tokenize(TEXTS)
    batch = hm.collate(ids)
    L = hm.n_layers
    n = firing_counts(hm, ids[:1])[0].shape[1]
    mask = torch.zeros(L, n, dtype=torch.bool)
    mask[0, :5] = True
    mask[L - 1, 3:9] = True
    with torch.no_grad():
        base = hm.forward_batch(batch).logits
        with deactivated(hm, mask):
            off = hm.forward_batch(batch).logits
        assert not torch.allclose(base, off)
        mlps = [b.mlp for b in hm.blocks]
        down = [getattr(m, "down_proj", None) or getattr(m, "c_proj") for m in mlps]
        saved = [d.weight.detach().clone() for d in down]
        try:
            for k, d in enumerate(down):
                if hasattr(d, "nf"):  # GPT-2 Conv1D: weight [n_in, n_out]
                    d.weight[mask[k]] = 0
                else:
                    d.weight[:, mask[k]] = 0
            zeroed = hm.forward_batch(batch).logits
        finally:
            for d, w in zip(down, saved):
                d.weight.copy_(w)
    torch.testing.assert_close(off, zeroed, atol=1e-5, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(hm.forward_batch(batch).logits, base)  # hooks are gone


def test_neuron_file_round_trip_and_wrong_model(tmp_path):
    masks = {"de": torch.tensor([[True, False], [False, True]])}
    path = save_neurons(tmp_path / "n.safetensors", masks, {"model": "a", "weights_sha256": "x"})
    got = load_neurons(path, expect={"model": "a"})
    assert torch.equal(got["de"], masks["de"])
    with pytest.raises(ValueError, match="made for model='a', not 'b'"):
        load_neurons(path, expect={"model": "b"})
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="is not a safetensors file"):
        load_neurons(bad)


def test_language_neurons_experiment_smoke(tmp_path):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            "model=tiny_llama", "progress=false", "experiment=language_neurons", "experiment.languages=[en,de,zh]",
            "experiment.tokens=256", "experiment.eval_tokens=128", "experiment.window=32",
            "experiment.bottom_fraction=0.05"])
    run_job(cfg, tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    ppl = df[df["metric"] == "perplexity"]
    assert "none" in set(ppl["deactivated"]) and set(ppl["lang"]) == {"en", "de", "zh"}
    assert (ppl["value"] > 0).all()
    counts = df[df["metric"] == "n_neurons"]
    assert set(counts["layer"]) == {1, 2, 3}
    assert (tmp_path / "neurons.safetensors").is_file() and (tmp_path / "lape_ppl_ratio.png").is_file()
    assert "Language-specific neurons (LAPE)" in (tmp_path / "report.md").read_text()


def test_language_neurons_overlap_with_regions_from_regions_ablation(tmp_path):
    base = ["model=tiny_llama", "progress=false", "experiment.languages=[en,de,zh]", "experiment.window=32",
            "experiment.eval_tokens=64"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        reg = compose("config", overrides=[*base, "experiment=regions_ablation", "experiment.importance.tokens=128",
                                           "experiment.k=0.05", "experiment.regions=[none,mono]"])
        lape = compose("config", overrides=[*base, "experiment=language_neurons", "experiment.tokens=256",
                                            "experiment.bottom_fraction=0.05",
                                            f"experiment.regions_file={tmp_path / 'r' / 'regions.safetensors'}"])
    run_job(reg, tmp_path / "r")
    run_job(lape, tmp_path / "n")
    df = pd.read_csv(tmp_path / "n" / "results.csv")
    ov = df[df["metric"] == "region_overlap"]
    assert set(ov["region"]) == {"mono:en", "mono:de", "mono:zh", "core"}
    has = {lang for lang in ("en", "de", "zh")
           if df[(df["metric"] == "n_neurons") & (df["lang"] == lang)]["value"].sum() > 0}
    assert has and set(ov["lang"]) == has  # a language without neurons has no overlap row
    assert ((ov["value"] >= 0) & (ov["value"] <= 1)).all()
    assert (df[df["metric"] == "region_enrichment"]["value"].dropna() >= 0).all()
    assert "LAPE neurons vs monolingual regions" in (tmp_path / "n" / "report.md").read_text()
    # reusing the saved neurons gives the same sets and reports the threshold they were selected with
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        again = compose("config", overrides=[*base, "experiment=language_neurons", "experiment.tokens=256",
                                             f"experiment.neurons_file={tmp_path / 'n' / 'neurons.safetensors'}"])
    run_job(again, tmp_path / "m")
    df2 = pd.read_csv(tmp_path / "m" / "results.csv")
    n1, n2 = (d[d["metric"] == "n_neurons"]["value"].to_numpy() for d in (df, df2))
    assert (n1 == n2).all()
    thr = [line.split("Threshold ")[1].split(";")[0] for p in ("n", "m")
           for line in (tmp_path / p / "report.md").read_text().splitlines() if "Threshold " in line]
    assert len(thr) == 2 and thr[0] == thr[1] and thr[0] != "nan"
