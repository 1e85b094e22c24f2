"""Formal semantics: the grammar's logical forms, the swapped-name and shuffled baselines."""
import random
from collections import Counter

import pandas as pd
import pytest

from helpers import run_cfg
from modalities.base import ADAPTERS
from modalities.semantics import (CONSTRUCTIONS, INTRANSITIVE, NAMES, TRANSITIVE, VARIANTS, SemanticsAdapter, Term,
                                  generate, render, shuffle_conjuncts, swap_names)

PAST = {lemma: past for lemma, past, _ in TRANSITIVE} | {lemma: past for lemma, past in INTRANSITIVE}
PAST |= {"give": "gave", "send": "sent", "show": "showed", "hand": "handed", "lend": "lent", "say": "said",
         "think": "thought", "hope": "hoped", "believe": "believed", "know": "knew"}
PARTICIPLE = {lemma: part for lemma, _, part in TRANSITIVE}


def test_generation_is_seeded_distinct_and_cycles_constructions():
    a = generate(60, seed=2)
    assert [e.sentence for e in a] == [e.sentence for e in generate(60, seed=2)]
    assert len({e.sentence for e in a}) == 60
    assert Counter(e.construction for e in a) == {c: 10 for c in CONSTRUCTIONS}
    with pytest.raises(ValueError, match="construction 'poem'"):
        generate(3, constructions=["poem"])


def test_every_example_has_two_names_once_each():
    for ex in generate(120):
        words = ex.sentence.split()
        a, b = ex.names
        assert a != b and a in NAMES and b in NAMES
        assert words.count(a) == 1 and words.count(b) == 1
        args = [x for t in ex.terms for x in t.args]
        assert args.count(a) == 1 and args.count(b) == 1


def test_event_variables_index_the_verb_position():
    """COGS convention: x_i is the i-th word of the sentence (0-based) for events and nouns."""
    for ex in generate(120):
        words = ex.sentence.split()
        for t in ex.terms:
            head = t.args[0]
            i = int(head[1:])
            if t.definite:
                assert words[i] == t.pred, (ex.sentence, t)
            else:
                lemma = t.pred.split(".")[0]
                assert words[i] in (PAST[lemma], PARTICIPLE.get(lemma)), (ex.sentence, t)


def test_render_styles():
    terms = (Term("cake", ("x4",), True), Term("give.agent", ("x1", "Emma")), Term("give.theme", ("x1", "x4")))
    assert render(terms, "cogs") == ("* cake ( x _ 4 ) ; give . agent ( x _ 1 , Emma ) AND "
                                     "give . theme ( x _ 1 , x _ 4 )")
    assert render(terms, "compact") == "*cake(x4); give.agent(x1, Emma) AND give.theme(x1, x4)"
    with pytest.raises(ValueError, match="lf_style='latex'"):
        render(terms, "latex")


def test_swap_and_shuffle_properties():
    rng = random.Random(0)
    for ex in generate(60):
        sw = swap_names(ex.terms, *ex.names)
        assert sw != ex.terms and swap_names(sw, *ex.names) == ex.terms
        sh = shuffle_conjuncts(ex.terms, rng, ex.names)
        assert Counter(sh) == Counter(ex.terms) and sh != ex.terms
        assert [t for t in sh if t.definite] == [t for t in ex.terms if t.definite]
        flat = [x for t in sh for x in t.args]  # names now in the opposite order to the sentence
        assert flat.index(ex.names[1]) < flat.index(ex.names[0])


def test_adapter_variants_are_aligned_twins():
    assert ADAPTERS["semantics"] is SemanticsAdapter
    ad = SemanticsAdapter(n_items=24, variants=VARIANTS, lf_style="compact")
    sets = {s.ids["lang"]: s for s in ad.pairs()}
    assert list(sets) == list(VARIANTS)
    assert all(s.a.inputs == sets["paired"].a.inputs for s in sets.values())
    for ex, sh, ssh in zip(ad.examples(), sets["shuffled"].b.inputs, sets["swapped_shuffled"].b.inputs):
        a, b = ex.names
        assert ssh == sh.replace(a, "\0").replace(b, a).replace("\0", b)  # the same order, names swapped
    with pytest.raises(ValueError, match="variants: unknown"):
        SemanticsAdapter(variants=["negated"])


@pytest.mark.slow
def test_semantics_experiment_smoke(tmp_path):
    report = run_cfg(["experiment=semantics", "model=tiny_llama", "modality.n_items=24", "metric.n_boot=10"], tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    comp = df[df["task"] == "sentence-lf"]
    assert set(comp["lang"]) == {"last", "mean"}
    assert 0 not in set(comp[comp["lang"] == "last"]["layer"])  # every sentence ends in " ." at layer 0
    hard = df[df["task"] == "sentence-lf vs altered lf"]
    assert set(hard["contrast"]) == {"swapped", "order_controlled", "shuffled"}
    assert set(hard["metric"]) == {"cos_difference", "prefer_first", "cos_difference_centered",
                                   "prefer_first_centered"}
    pref = hard[hard["metric"].str.startswith("prefer")]
    assert pref["value"].between(0, 1).all() and (pref["baseline"] == 0.5).all()
    text = report.read_text()
    assert "true vs swapped-name" in text and "order_controlled" in text and "layers left out" in text
