"""WiC: file format and bad input, input modes, training-split normalisation, batch independence."""
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import run_cfg
from hub.models.tiny import tiny_model, tiny_tokenizer
from hub.probe import Normalizer, PairProbe, best_threshold
from hub.stats import auc, spearman_ci, wilson
from modalities.wic import (DATA, WicItem, WicItemError, load_wic, locate, locate_items, mode_input, mode_sides,
                            read_graded, read_wic, token_span)
from modalities.wic_build import build_from_inventory

ROWS = [
    ("bank", "N", "1-4", "The bank closed early.", "We sat on the bank of the river.", "F"),
    ("bat", "N", "1-3", "A bat flew past.", "He swung the bat hard.", "F"),
    ("bank", "N", "3-1", "She robbed the bank yesterday.", "The bank lends money.", "T"),
    ("bat", "N", "1-1", "The bat slept.", "A bat hunts insects.", "T"),
]


def write_split(root, split, rows):
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{split}.data.txt").write_text("".join("\t".join(r[:5]) + "\n" for r in rows))
    (root / f"{split}.gold.txt").write_text("".join(r[5] + "\n" for r in rows))


def test_shipped_sets_sizes_balance_and_disjoint_words():
    en, de = load_wic(DATA / "en"), load_wic(DATA / "de")
    assert sum(len(v) for v in en.splits.values()) >= 200 and sum(len(v) for v in de.splits.values()) >= 60
    for ws in (en, de):
        assert not ws.drops
        words = {s: {it.target for it in items} for s, items in ws.splits.items()}
        assert not (words["train"] & words["test"]) and not (words["dev"] & words["test"])
        for items in ws.splits.values():
            assert Counter(it.label for it in items)[True] == len(items) / 2


def test_shipped_files_are_built_from_the_inventories(tmp_path):
    for lang in ("en", "de"):
        build_from_inventory(DATA / f"{lang}_senses.tsv", tmp_path / lang)
        for f in ("train.data.txt", "train.gold.txt", "dev.data.txt", "test.gold.txt"):
            assert (tmp_path / lang / f).read_text() == (DATA / lang / f).read_text(), (lang, f)


def test_malformed_files_are_errors_naming_file_and_line(tmp_path):
    p = tmp_path / "x.data.txt"
    p.write_text("bank\tN\t1-3\tonly four fields\n")
    with pytest.raises(ValueError, match=r"x.data.txt:1: expected 5 tab-separated fields"):
        read_wic(p)
    p.write_text("bank\tN\tone-three\tThe bank.\tA bank.\n")
    with pytest.raises(ValueError, match=r"x.data.txt:1: index field 'one-three' is malformed"):
        read_wic(p)
    p.write_text("bank\tN\t1-1\tThe bank.\tA bank.\n")
    g = tmp_path / "x.gold.txt"
    g.write_text("T\nF\n")
    with pytest.raises(ValueError, match="2 labels for 1 items"):
        read_wic(p, g)
    g.write_text("yes\n")
    with pytest.raises(ValueError, match=r"x.gold.txt:1: label 'yes'"):
        read_wic(p, g)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no train.data.txt"):
        load_wic(tmp_path / "empty")


def test_out_of_range_index_and_missing_target_are_counted_drops(tmp_path, caplog):
    rows = ROWS + [("bank", "N", "1-9", "The bank closed.", "Short one.", "T"),
                   ("bat", "N", "0-0", "Cats sleep.", "The bat flew.", "F")]
    drops, notes = Counter(), Counter()
    write_split(tmp_path, "train", rows)
    items = locate_items(read_wic(tmp_path / "train.data.txt", tmp_path / "train.gold.txt"), drops, notes)
    assert len(items) == 5 and drops == {"index out of range": 1}
    assert notes["indexed word does not look like the target (kept)"] == 1
    assert "train.data.txt:5" in caplog.text
    strict = locate_items(read_wic(tmp_path / "train.data.txt", tmp_path / "train.gold.txt"), Counter(), Counter(),
                          check_target="drop")
    assert len(strict) == 4
    with pytest.raises(WicItemError, match="target word not in its sentence"):
        locate("The cat slept.", "bank", None)
    assert locate("We banked, then the Banks closed.", "bank", None)[0] == (3, 9)
    assert locate("He stood on the bank, smiling.", "bank", 4) == ((16, 20), True)


def test_graded_file_without_indices_finds_or_drops(tmp_path):
    p = tmp_path / "g.csv"
    p.write_text("word,sentence1,sentence2,mean_relatedness\nbat,The bat flew.,The bat broke.,0.5\n"
                 "lamb,The lamb slept.,We ate lamb.,2.5\nbank,No such word here.,The bank.,1\n")
    drops = Counter()
    items = read_graded(p, drops=drops)
    assert [it.score for it in items] == [0.5, 2.5] and drops == {"target word not in its sentence": 1}
    assert items[1].words == ("lamb", "lamb")
    p.write_text("word,sentence1,sentence2,score\nbat,a bat.,a bat.,x\n")
    with pytest.raises(ValueError, match=r"missing column\(s\) \['mean_relatedness'\]"):
        read_graded(p)
    with pytest.raises(ValueError, match="g.csv:2: score='x' is not a number"):
        read_graded(p, column="score")
    assert len(read_graded(DATA / "graded_en.tsv")) >= 30


def test_token_span_and_mode_inputs():
    tok = tiny_tokenizer()
    s = "The cat sat on the mat."
    ids, (t0, t1) = token_span(tok, s, 4, 7)
    assert "cat" in tok.decode(ids) and t0 >= 1  # BOS is position 0
    assert tok(s)["input_ids"][t0:t1] == ids
    with pytest.raises(ValueError, match="outside the text"):
        token_span(tok, s, 20, 40)
    base = mode_input(tok, s, (4, 7), "base")
    rep = mode_input(tok, s, (4, 7), "repeat")
    prev = mode_input(tok, s, (4, 7), "repeat_prev")
    prompt = mode_input(tok, s, (4, 7), "prompt")
    assert base.text == s and rep.text == f"{s} {s}" and prev.text == rep.text
    full = tok(rep.text)["input_ids"]
    assert "cat" in tok.decode(full[rep.span[0]:rep.span[1]]) and rep.span[0] > base.span[1]
    assert prev.span == (rep.span[0] - 1, rep.span[1] - 1)
    assert prompt.span is None and prompt.text.startswith('In this sentence "The cat') and '"cat" means' in prompt.text
    with pytest.raises(ValueError, match="mode='twice'"):
        mode_input(tok, s, (4, 7), "twice")


def _items(rows):
    return locate_items([WicItem(r[0], r[1], *map(int, r[2].split("-")), r[3], r[4], r[5] == "T") for r in rows],
                        Counter(), Counter())


@pytest.mark.parametrize("mode", ["base", "repeat", "repeat_prev", "prompt"])
def test_scores_do_not_depend_on_batch_composition(mode):
    hm = tiny_model("llama")
    items = _items(ROWS)
    train = _items(ROWS[::-1])
    tok = hm.tokenizer
    probe = PairProbe(hm, normalize="center", batch_size=3).fit(PairProbe(hm).vectors(mode_sides(tok, train, mode)))
    full = probe.cosines(probe.vectors(mode_sides(tok, items, mode)))  # [n, layer]
    alone = np.concatenate([probe.cosines(probe.vectors(mode_sides(tok, [it], mode))) for it in items])
    shuffled = probe.cosines(probe.vectors(mode_sides(tok, items[::-1], mode)))[::-1]
    assert full.shape == (4, hm.n_layers + 1)
    np.testing.assert_allclose(alone, full, atol=1e-5)
    np.testing.assert_allclose(shuffled, full, atol=1e-5)


def test_normalizer_is_fitted_on_training_states_only():
    train = torch.randn(10, 3, 8) + 5.0
    norm = Normalizer("center").fit(train)
    x = torch.randn(4, 3, 8)
    torch.testing.assert_close(norm(x), x - train.mean(0))
    std = Normalizer("standardize").fit(train)
    torch.testing.assert_close(std(train).mean(0), torch.zeros(3, 8), atol=1e-5, rtol=0)
    with pytest.raises(RuntimeError, match="before fit"):
        Normalizer("center")(x)
    with pytest.raises(ValueError, match="normalize='whiten'"):
        Normalizer("whiten")
    assert Normalizer("none").fit(train)(x) is x


def test_threshold_accuracy_auc_and_intervals():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    labels = np.array([False, False, False, True, True, True])
    thr = best_threshold(scores, labels)
    assert 0.3 < thr < 0.7 and abs(thr - 0.5) < 1e-9
    assert auc(scores, labels) == 1.0 and auc(scores, ~labels) == 0.0 and auc(np.ones(6), labels) == 0.5
    lo, hi = wilson(45, 90)
    assert lo < 0.5 < hi and 0.39 < lo and hi < 0.61
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and wilson(10, 10)[1] == pytest.approx(1.0)
    rho, lo, hi = spearman_ci(np.arange(20.0), np.arange(20.0) ** 3)
    assert rho == pytest.approx(1.0) and lo <= rho <= hi


@pytest.mark.slow
def test_wic_experiment_smoke(tmp_path):
    report = run_cfg(["experiment=wic", "model=tiny_llama", "wic.max_items=12", "wic.modes=[base,prompt]"], tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    acc = df[df["metric"] == "accuracy"]
    assert set(acc["lang"]) == {"en", "de"} and set(acc["mode"]) == {"base", "prompt"}
    assert acc["value"].between(0, 1).all() and (acc["ci_low"] <= acc["value"]).all()
    assert (acc["n"] == 12).all() and (acc["split"] == "test").all()
    sp = df[df["metric"] == "spearman"]
    assert set(sp["mode"]) == {"base", "prompt"} and sp["value"].between(-1, 1).all()
    text = report.read_text()
    assert "WiC probe per layer" in text and "best layer on dev" in text and "Spearman" in text
    assert (tmp_path / "wic_accuracy.png").is_file()
