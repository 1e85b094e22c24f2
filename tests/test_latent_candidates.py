"""latent_langs: several candidate latent languages read next to the target (issue 14 §2)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import run_cfg

from hub.describe import candidates_reading
from hub.lens.readout import lens_readout
from hub.models.tiny import tiny_model, tiny_tokenizer
from hub.readings import compare_curves, series_leads
from modalities.text import TextAdapter

HEADER = "concept,en,fr,de,zh,ja\n"
ROWS = ["dog,dog,chien,Hund,狗,犬", "cat,cat,chat,Katze,猫,猫", "water,water,eau,Wasser,水,水",
        "book,book,livre,Buch,书,本", "flower,flower,fleur,Blume,花,花", "sun,sun,soleil,Sonne,太阳,太陽",
        "house,house,maison,Haus,房子,家", "tree,tree,arbre,Baum,树,木"]


@pytest.fixture
def adapter(tmp_path):
    p = tmp_path / "words.csv"
    p.write_text(HEADER + "\n".join(ROWS), encoding="utf-8")
    return TextAdapter(words=p, sentences=None, languages=["en", "fr", "de", "zh", "ja"], n_shots=2, seed=1)


def test_default_is_the_dominant_language_only(adapter):
    lt = adapter.lens_task("translation", "fr", "de", tiny_tokenizer())
    assert lt.set_names == ["de", "en"] and all(len(s) == 2 for s in lt.token_sets)


def test_candidates_next_to_the_target(adapter):
    tok = tiny_tokenizer()
    base = adapter.lens_task("translation", "fr", "de", tok)
    lt = adapter.lens_task("translation", "fr", "de", tok, latents=["en", "zh"])
    assert lt.set_names == ["de", "en", "zh"]
    # the first candidate drives the item filter: same items and sets as the single-language form
    assert lt.items == base.items and [s[:2] for s in lt.token_sets] == base.token_sets
    for (t, e, z), concept in zip(lt.token_sets, lt.items):
        assert z and not (z & t) and not (z & e)
    # a candidate equal to the target is left out of that direction
    assert adapter.lens_task("translation", "fr", "zh", tok, latents=["en", "zh"]).set_names == ["zh", "en"]
    with pytest.raises(ValueError, match="only candidate"):
        adapter.lens_task("translation", "fr", "zh", tok, latents=["zh"])


def test_a_candidate_sharing_the_target_word_is_not_read_on_that_item(adapter):
    """de→ja with zh as a candidate: 猫, 水, 花 are the same character in both; those items keep
    their target and en readings, the zh set is empty there and counted."""
    lt = adapter.lens_task("translation", "de", "ja", tiny_tokenizer(), latents=["en", "zh"])
    z = {c: s[2] for c, s in zip(lt.items, lt.token_sets)}
    assert {"cat", "water", "flower"} <= set(lt.items)
    assert not z["cat"] and not z["water"] and not z["flower"]
    skipped = sum(v for k, v in lt.drops.items() if k.startswith("candidate zh not read"))
    assert skipped == sum(1 for s in z.values() if not s) >= 3


def test_lens_readout_leaves_empty_candidate_sets_out_of_their_mean():
    hm = tiny_model("llama")
    prompts = ["a b c", "d e f", "g h", "i j k l"]
    sets = [[frozenset({5}), frozenset({7})], [frozenset({8}), frozenset()],
            [frozenset({9}), frozenset({11, 12})], [frozenset({10}), frozenset()]]
    df, raw = lens_readout(hm, prompts, sets, ["tgt", "zh"], skip_empty=True, energy=False)
    zh = df[(df.metric == "lang_prob") & (df.lang == "zh")].sort_values("layer")
    assert (zh["n"] == 2).all()
    np.testing.assert_allclose(zh["value"], raw["set_prob"][[0, 2], :, 1].mean(0), rtol=1e-6)
    df0, _ = lens_readout(hm, prompts, sets, ["tgt", "zh"], energy=False)  # default: empty reads as 0
    zh0 = df0[(df0.metric == "lang_prob") & (df0.lang == "zh")].sort_values("layer")
    assert (zh0["n"] == 4).all() and np.allclose(zh0["value"], raw["set_prob"][:, :, 1].mean(0))


def _curve(values, half=0.01):
    v = np.asarray(values, float)
    return pd.DataFrame({"value": v, "ci_low": v - half, "ci_high": v + half}, index=range(len(v)))


def test_series_leads_materiality_and_separation():
    en = _curve([0.0001, 0.004, 0.20, 0.3000, 0.05, 0.0], half=0.001)
    zh = _curve([0.0050, 0.000, 0.10, 0.2995, 0.20, 0.05], half=0.001)
    leads, low = series_leads({"en": en, "zh": zh}, min_prob=0.01)
    # layer 1: en leads but below 0.01 (not counted); layer 3: intervals overlap; layer 0: zh < 0.01
    assert leads == {"en": [2], "zh": [4, 5]} and low == {"en": [1], "zh": [0]}
    ab = compare_curves(en, zh, 0.01)  # two curves agree with the pairwise rule
    assert (ab.a, ab.b) == (leads["en"], leads["zh"])
    three, _ = series_leads({"en": en, "zh": zh, "de": _curve([0.5, 0, 0, 0, 0.2005, 0], half=0.001)}, min_prob=0.01)
    assert three["de"] == [0] and 4 not in three["zh"] and three["en"] == [2]


def test_candidates_reading_names_the_leader():
    rows = []
    for lang, vals in {"de": [0.0, 0.0, 0.01, 0.05, 0.6], "en": [0.0, 0.2, 0.3, 0.1, 0.05],
                       "zh": [0.0, 0.05, 0.02, 0.2, 0.01]}.items():
        rows += [{"metric": "lang_prob", "lang": lang, "layer": k, "value": v, "ci_low": v - 0.01,
                  "ci_high": v + 0.01} for k, v in enumerate(vals)]
    text = candidates_reading(pd.DataFrame(rows), "de", ["en", "zh"], 0.01)
    assert "**en** leads the most" in text and "p(en) leads the other candidates at intermediate layers 1–2" in text
    assert "p(zh) leads the other candidates at intermediate layers 3" in text


def test_experiment_runs_several_directions_with_candidates(tmp_path):
    run_cfg(["experiment=scale_latent_language", "model=tiny_llama", "modality.max_items=6",
             "modality.n_shots=2"], tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    probs = df[df.metric == "lang_prob"]
    got = {(s, t): set(g["lang"]) for (s, t), g in probs.groupby(["src", "tgt"])}
    assert got == {("fr", "zh"): {"zh", "en"}, ("de", "ja"): {"ja", "en", "zh"}, ("fr", "de"): {"de", "en", "zh"}}
    report = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert report.count("Candidates en, zh:") == 2  # de→ja and fr→de; fr→zh has one candidate left


@pytest.mark.parametrize("bad", ["directions=[fr,zh]", "directions=[[fr,zh,de]]", "directions=[]"])
def test_bad_directions_are_one_clear_error(tmp_path, bad):
    with pytest.raises(ValueError, match="directions"):
        run_cfg(["experiment=latent_language", "model=tiny_llama", bad], tmp_path)
