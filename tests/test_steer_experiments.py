"""Smoke runs of the steering experiment configs on a tiny random model, through the Hydra app."""
import math

import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from experiments.steer_arithmetic import make_items, shot_pairs
from experiments.steer_code import call_arguments
from hub.stats import bootstrap_mean_ci
from hub.steps.steering import resolve_layers
from modalities.sentiment import Lexicon, LexiconScorer, read_lexicon, split_lexicon
from hub.cli import CONF_DIR, DATA_DIR, run_job

COLUMNS = {"metric", "layer", "value", "ci_low", "ci_high", "n", "scale", "model", "task"}
SMALL = ["model=tiny_llama", "progress=false", "experiment.layers=[1,3]", "experiment.n_boot=50"]


def run(tmp_path, overrides):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=SMALL + overrides)
    run_job(cfg, tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    assert COLUMNS <= set(df.columns)
    assert not df[["value", "ci_low", "ci_high", "n", "layer", "scale"]].isna().any().any()
    assert set(df["layer"]) == {1, 3}
    assert (tmp_path / "report.md").is_file() and list(tmp_path.glob("*.png"))
    return df


def test_steer_sentiment_smoke(tmp_path):
    df = run(tmp_path, ["experiment=steer_sentiment", "experiment.langs=[en,de]", "experiment.seeds=[0]",
                        "experiment.scales=[0,4]", "experiment.max_new_tokens=3", "experiment.n_build=4"])
    assert {"log_odds_shift", "lexicon_net"} <= set(df["metric"])
    assert set(df["vector"]) == {"same language", "from en"}
    zero = df[(df["scale"] == 0) & (df["metric"] == "log_odds_shift")]
    assert (zero["value"] == 0).all()  # the shift is measured from the scale-0 baseline
    assert (tmp_path / "generations.csv").is_file()
    assert "Sentiment steering across languages" in (tmp_path / "report.md").read_text()


def test_steer_sentiment_with_a_user_classifier(tmp_path):
    """The classifier hook: any local text-classification model directory, scored on the generations."""
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from hub.models.tiny import tiny_tokenizer

    clf_dir = tmp_path / "clf"
    cfg = LlamaConfig(vocab_size=400, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, pad_token_id=0, num_labels=2,
                      id2label={0: "NEG", 1: "POS"}, label2id={"NEG": 0, "POS": 1})
    LlamaForSequenceClassification(cfg).save_pretrained(clf_dir)
    tiny_tokenizer().save_pretrained(clf_dir)
    df = run(tmp_path / "out", ["experiment=steer_sentiment", "experiment.langs=[en,de]", "experiment.seeds=[0,1]",
                                "experiment.generate_seeds=[0]", "experiment.scales=[0,4]",
                                "experiment.max_new_tokens=2", "experiment.n_build=4",
                                f"experiment.classifier.path={clf_dir}", "experiment.classifier.positive_label=POS"])
    clf = df[df["metric"] == "classifier_positive"]
    assert len(clf) and clf["value"].between(0, 1).all()


def test_steer_arithmetic_smoke(tmp_path):
    df = run(tmp_path, ["experiment=steer_arithmetic", "experiment.n_items=4", "experiment.scales=[0,2]"])
    assert set(df["vector"]) == {"operand words", "random", "operand words − random"}
    assert set(df["metric"]) == {"success", "original", "logit_diff_shift"}
    rates = df[(df["metric"] != "logit_diff_shift") & (df["vector"] != "operand words − random")]
    assert rates["value"].between(0, 1).all()
    items = pd.read_csv(tmp_path / "items.csv")
    assert len(items) == 2 * 2 * 2 * 4  # vector kinds x layers x scales x items


def test_steer_code_smoke(tmp_path):
    df = run(tmp_path, ["experiment=steer_code", "experiment.token_a=5", "experiment.token_b=6",
                        "experiment.scales=[0,1]", "experiment.max_new_tokens=3",
                        "experiment.prompts=[\"for i in range(\",\"x = list(range(\"]"])
    assert set(df["metric"]) == {"zero_start", "zero_start_shift", "explicit_start", "explicit_start_shift",
                                 "literal_token", "logp_zero_shift"}
    assert (df[(df["scale"] == 0) & df["metric"].str.endswith("shift")]["value"] == 0).all()


def test_lexicons_are_well_formed():
    for lang in ("en", "de", "fr", "es", "zh"):
        lex = read_lexicon(DATA_DIR / "sentiment" / f"{lang}.txt", lang)
        assert len(lex.positive) >= 30 and len(lex.negative) >= 30
        assert not set(lex.positive) & set(lex.negative), lang
        sp = split_lexicon(lex, 12, seed=0)
        assert len(sp.build_pos) == 12 and not set(sp.build_pos) & set(sp.held_pos)
        assert sp == split_lexicon(lex, 12, seed=0) and sp != split_lexicon(lex, 12, seed=1)


def test_lexicon_scorer_matches_whole_words_and_longest_entries():
    en = Lexicon("en", ("good", "great"), ("bad", "not good"))
    s = LexiconScorer(en, ["good", "great"], ["bad", "not good"])
    assert s("A good, GREAT day") == 2
    assert s("goodness is not good") == -1  # 'goodness' is no match; 'not good' wins over 'good'
    zh = Lexicon("zh", ("好",), ("不好",))
    assert LexiconScorer(zh, ["好"], ["不好"])("这个不好，那个好") == 0
    assert LexiconScorer(zh, ["好"], [])("不好") == 0  # held-out scoring never reads 不好 as 好


def test_arithmetic_items_and_code_parsing():
    items = make_items("a-b", (2, 9), (1, 8), 30, seed=0, exclude=shot_pairs(["9=4+5"], "{a}={b}+", (2, 9), (1, 8)))
    assert len(items) == 30 and len(set(items)) == 30
    assert all(b != c and 0 <= a - b <= 9 and 0 <= a - c <= 9 for a, b, c in items)
    assert (9, 4) not in {(a, b) for a, b, _ in items}
    assert call_arguments("0, len(xs)):") == ["0", "len(xs)"]
    assert call_arguments("len(xs)):") == ["len(xs)"]
    assert call_arguments("n") is None


def test_bootstrap_ci():
    m, lo, hi = map(float, bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0], n_boot=200))
    assert m == 2.5 and lo <= m <= hi
    assert tuple(map(float, bootstrap_mean_ci([5.0]))) == (5.0, 5.0, 5.0)
    with pytest.raises(ValueError, match="no values"):
        bootstrap_mean_ci([])
    assert not math.isnan(lo)


def test_layers_from_config_ints_or_fractions_of_depth():
    from hub.models.tiny import tiny_model

    hm = tiny_model("llama")  # 3 blocks
    assert resolve_layers(hm, [0.22, 0.44, 0.67]) == [1, 2]  # the configs' default; 4, 8, 12 on 18 blocks
    assert resolve_layers(hm, [0, 3, 2.0]) == [0, 3, 2]
    with pytest.raises(IndexError, match="valid layers are 0..3"):
        resolve_layers(hm, [4])
    with pytest.raises(ValueError, match="fraction of depth"):
        resolve_layers(hm, [1.5])
