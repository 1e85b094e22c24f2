"""The ``lens`` config group: lens=logit (default) | patchscope | [logit,patchscope] in one job."""
import pandas as pd
import pytest
import torch
from helpers import compose_cfg, run_cfg

from hub.errors import UserError
from hub.lens import LogitLens, PatchscopeLens
from hub.lens.select import lenses_from_cfg
from hub.models.tiny import tiny_model


def test_default_is_the_logit_lens_following_lens_norm():
    hm = tiny_model("llama")
    for norm in (True, False):
        lenses = lenses_from_cfg(compose_cfg([f"lens_norm={norm}"]), hm)
        assert list(lenses) == ["logit"] and isinstance(lenses["logit"], LogitLens)
        assert lenses["logit"].apply_norm is norm


def test_several_lenses_in_the_given_order_with_their_options():
    hm = tiny_model("llama")
    cfg = compose_cfg(["lens=[patchscope,logit]", "lens.patchscope.target_layer=1",
                       "lens.patchscope.target_prompt='a -> a; ?'"])
    lenses = lenses_from_cfg(cfg, hm)
    assert list(lenses) == ["patchscope", "logit"]
    ps = lenses["patchscope"]
    assert isinstance(ps, PatchscopeLens) and ps.target_layer == 1 and ps.target_prompt == "a -> a; ?"


def test_bad_lens_options_are_one_line_user_errors():
    hm = tiny_model("llama")
    with pytest.raises(UserError, match="lens.patchscope: bad option"):
        lenses_from_cfg(compose_cfg(["lens=patchscope", "+lens.patchscope.colour=red"]), hm)
    with pytest.raises(UserError, match="target_layer='middle'"):
        lenses_from_cfg(compose_cfg(["lens=patchscope", "lens.patchscope.target_layer=middle"]), hm)


def test_latent_language_with_two_lenses(tmp_path):
    report = run_cfg(["experiment=latent_language", "model=tiny_llama", "cache.enabled=false",
                      "lens=[logit,patchscope]", "modality.max_items=6", "experiment.energy=false"], tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    assert list(df["lens"].unique()) == ["logit", "patchscope"]
    p = df[df["metric"] == "lang_prob"].pivot_table(index=["lang", "layer"], columns="lens", values="value")
    last = p.index.get_level_values("layer").max()
    # at the last layer (k' = k = L) the patchscope reads the model's own output, as the logit lens does
    torch.testing.assert_close(torch.tensor(p.xs(last, level="layer")["patchscope"].to_numpy()),
                               torch.tensor(p.xs(last, level="layer")["logit"].to_numpy()), atol=1e-6, rtol=0)
    # below it they are different readings
    assert (p.drop(index=last, level="layer")["patchscope"] != p.drop(index=last, level="layer")["logit"]).any()
    text = report.read_text()
    assert "**logit lens.**" in text and "**patchscope lens.**" in text
    assert (tmp_path / "latent_translation_fr-zh_prob_lenses.png").exists()
