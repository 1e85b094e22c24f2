"""Language vectors (mean over a language's tokens minus the mean over languages), language ID,
and the steer_language experiment end to end on a tiny model."""
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from hub.cli import CONF_DIR, run_job
from hub.language_vectors import LanguageIdentifier, language_vectors
from hub.models.tiny import tiny_model
from hub.perplexity import continuation_nll


def test_language_vectors_are_token_means_minus_the_grand_mean():
    hm = tiny_model("llama")
    wins = {"a": hm.tokenize(["The cat sat on the mat.", "A dog"]), "b": hm.tokenize(["Le chat", "Der Hund bellt"])}
    v = language_vectors(hm, wins, [1, 3], batch_size=1)
    means = {}
    for lang, ws in wins.items():
        toks = []
        for w in ws:  # one by one, BOS dropped by hand
            h = hm.capture([w], layers=[1, 3], positions="all")[0]  # [layer, s, d]
            toks.append(h[:, 1:] if w[0] == hm.tokenizer.bos_token_id else h)
        means[lang] = torch.cat(toks, 1).mean(1)
    grand = (means["a"] + means["b"]) / 2
    for lang in wins:
        torch.testing.assert_close(v[lang], means[lang] - grand, atol=1e-5, rtol=0)
    torch.testing.assert_close(v["a"] + v["b"], torch.zeros_like(v["a"]), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at least 2"):
        language_vectors(hm, {"a": wins["a"]}, [1])


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_continuation_nll_batched_equals_one_by_one_and_full_logits(family):
    hm = tiny_model(family)
    prompts = hm.tokenize(["The cat", "A much longer prompt about a dog and a cat", "Le chat", "x"])
    conts = [hm.tokenizer(t, add_special_tokens=False)["input_ids"] for t in [" sat on the mat", " barks", "", " dort bien ici"]]
    got = continuation_nll(hm, prompts, conts, batch_size=4)
    one = torch.stack([continuation_nll(hm, [p], [c], batch_size=1)[0] for p, c in zip(prompts, conts)])
    torch.testing.assert_close(got, one, atol=1e-5, rtol=0, equal_nan=True)
    assert torch.isnan(got[2]) and torch.isfinite(got[[0, 1, 3]]).all()
    for i in (0, 1, 3):  # reference: the model's own logits on the unpadded sequence
        full = torch.tensor([prompts[i] + conts[i]])
        with torch.no_grad():
            logits = hm.model(input_ids=full).logits[0, len(prompts[i]) - 1:-1].float()
        ref = torch.nn.functional.cross_entropy(logits, torch.tensor(conts[i]))
        torch.testing.assert_close(got[i], ref, atol=1e-5, rtol=0)
    # padding invariance: a much longer neighbour in the batch changes nothing
    pad = hm.tokenize(["word " * 40])[0]
    both = continuation_nll(hm, [prompts[0], pad], [conts[0], conts[3]], batch_size=2)
    torch.testing.assert_close(both[0], got[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="continuations"):
        continuation_nll(hm, prompts, conts[:2])


def test_language_identifier_on_short_texts():
    lid = LanguageIdentifier(["en", "de", "fr", "zh"])
    assert lid("Der Hund schläft vor der Tür") == "de"
    assert lid("Le chien dort devant la porte") == "fr"
    assert lid("狗在门前睡觉") == "zh"
    assert lid("   ") is None
    with pytest.raises(ValueError, match="not an ISO 639-1 code"):
        LanguageIdentifier(["en", "xx"])


def test_steer_language_smoke(tmp_path):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            "model=tiny_llama", "progress=false", "experiment=steer_language", "experiment.languages=[en,de,fr]",
            "experiment.directions=[[de,fr]]", "experiment.layers=[1,2]", "experiment.scales=[0,4]",
            "experiment.n_prompts=3", "experiment.max_new_tokens=4", "experiment.tokens=128", "experiment.window=32"])
    run_job(cfg, tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    rates = df[df["metric"].isin(["rate_tgt", "rate_src"])]
    assert set(rates["vector"]) == {"native", "from_hub", "random"}
    assert set(rates["layer"]) == {1, 2} and set(rates["scale"]) == {0, 4}
    dist = df[df["metric"] == "distinct_tokens"]["value"]
    assert len(dist) and ((dist > 0) & (dist <= 1)).all()
    assert ((rates["value"] >= 0) & (rates["value"] <= 1)).all()
    assert ((rates["ci_low"] <= rates["value"]) & (rates["value"] <= rates["ci_high"])).all()
    gens = pd.read_json(tmp_path / "generations.jsonl", lines=True)
    assert len(gens) == 3 * 3 * 2 * 2  # prompts x vector kinds x layers x scales
    # scale 0 is one unsteered generation, identical for every vector kind and layer
    zero = gens[gens["scale"] == 0].groupby(["vector", "layer"])["text"].apply(list)
    assert all(t == zero.iloc[0] for t in zero)
    # the batched run's scale-0 rows (zero vectors among steered rows) are plain unsteered generation
    from hub.context import get_model
    from hub.intervene import generate_with
    from modalities.text import read_table
    hm = get_model(cfg.model)
    prompts = [str(x) for x in read_table(cfg.data.sentences)["de"].dropna().tolist()[:3]]
    plain = generate_with(hm, prompts, None, max_new_tokens=4)
    assert zero.iloc[0] == plain
    assert "Language steering" in (tmp_path / "report.md").read_text()
