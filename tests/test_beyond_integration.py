"""Arithmetic, code, formal semantics and WiC on the real Gemma-3-270m (short: items subsampled).

Each test checks what the unit tests cannot: that the adapters' positions and token sets fit
Gemma's SentencePiece tokenizer, and a few findings that hold with wide margins on this model.
"""
from collections import Counter

import numpy as np
import pytest
import torch

from experiments.semantics import hard_baseline_rows
from hub.metrics import compare
from hub.lens import LogitLens
from hub.lens.readout import lens_readout
from hub.pairs import capture_side
from hub.probe import PairProbe
from hub.stats import mean_ci
from modalities.arithmetic import ArithmeticAdapter
from modalities.code import CodeAdapter
from modalities.semantics import VARIANTS, SemanticsAdapter
from modalities.wic import DATA, load_wic, locate_items, mode_input, mode_sides, read_wic, token_span

pytestmark = pytest.mark.integration


def test_arithmetic_lens_answers_in_digits(gemma):
    """Gemma answers c=a+ in digits: at the last layer the next token is a digit more likely than
    not (the 95% interval of the mass on the ten digit tokens lies above 1/2) and is the top lens
    token for every item; the answer's number words get far less mass than its digit.

    Not claimed: that the digit is the right one. p(the answer's first digit) is 0.108 on these
    items, chance among digits (0.99 / 10), and no higher than p(another item's first digit)."""
    ad = ArithmeticAdapter(ops=["+"], lens_items=16, seed=0)
    lt = ad.lens_task(gemma.tokenizer)
    for sets in lt.token_sets:  # Gemma writes single digits and ' three' / ' drei' as one token each
        assert all(len(s) <= 2 for s in sets)
    tok = gemma.tokenizer
    digits = frozenset(tok.convert_tokens_to_ids(str(d)) for d in range(10))
    assert len(digits) == 10 and all(tok.decode([t]) in "0123456789" for t in digits)
    sets = [[*s, digits] for s in lt.token_sets]
    df, raw = lens_readout(gemma, lt.prompts, sets, [*lt.set_names, "any digit"], energy=False)
    last = raw["set_prob"][:, -1]  # [items, sets]
    _, low, _ = mean_ci(last[:, -1:])
    assert low[0] > 0.5, last[:, -1]
    states = gemma.capture(lt.prompts, layers=[gemma.n_layers])
    top = LogitLens(gemma).reduce(states, top_k=1)["top_ids"][:, 0, 0]
    assert all(int(t) in digits for t in top), [tok.decode([int(t)]) for t in top]
    answer, words = last[:, 0], last[:, 1:-1]  # the answer's digit token, its number words
    assert (answer > 10 * words.max(1)).all()


def test_arithmetic_expression_and_words_align_after_centering(gemma):
    ad = ArithmeticAdapter(n_items=24, languages=["en"])
    (ps,) = list(ad.pairs())
    x, y = capture_side(gemma, ps.a, [0, 4, 8]), capture_side(gemma, ps.b, [0, 4, 8])
    df = compare(x.transpose(0, 1), y.transpose(0, 1), metrics=["cos_centered"], n_boot=0, layers=[0, 4, 8])
    assert df.set_index("layer").loc[4, "value"] > 0.2


def test_code_sites_fit_gemma_tokens(gemma):
    ad = CodeAdapter(lens_items=12)
    ct = ad.comma_task(gemma.tokenizer)
    tok = gemma.tokenizer
    assert all(tok.convert_ids_to_tokens(tok(p)["input_ids"][-1]).endswith(",") for p in ct.prompts)
    at = ad.argument_task(gemma.tokenizer)
    for prompt, (param, arg) in zip(at.prompts, at.token_sets):
        assert tok(prompt)["input_ids"][-1] in arg  # the read position is the argument's own last token
    df, _ = lens_readout(gemma, at.prompts, at.token_sets, at.set_names, layers=[0, 9, 18], energy=False)
    p = df[df.metric == "lang_prob"].pivot_table(index="layer", columns="lang", values="value")
    assert p.loc[0, "argument"] > 10 * p.loc[0, "parameter"]  # the embedding layer reads the current token


def test_semantics_hard_baseline_on_gemma(gemma):
    ad = SemanticsAdapter(n_items=8, variants=VARIANTS, positions="last")
    sets = {ps.ids["lang"]: ps for ps in ad.pairs(gemma)}
    layers = [0, 3, 6]
    s = capture_side(gemma, sets["paired"].a, layers)
    forms = {v: capture_side(gemma, ps.b, layers) for v, ps in sets.items()}
    df = hard_baseline_rows(s, forms, layers, "last", n_boot=50, seed=0, skip=[0])
    assert set(df["contrast"]) == {"swapped", "order_controlled", "shuffled"} and sorted(df["layer"].unique()) == [3, 6]
    assert df["value"].notna().all() and (df["ci_low"] <= df["ci_high"]).all()
    # at layer 0 every form ends in the same token " )": the states coincide, hence the skip
    assert torch.allclose(forms["paired"][:, 0], forms["paired"][:1, 0].expand_as(forms["paired"][:, 0]))


def test_wic_spans_cover_the_word_in_gemma_tokens(gemma):
    tok = gemma.tokenizer
    for lang in ("en", "de"):
        ws = load_wic(DATA / lang)
        for items in ws.splits.values():
            for it in items:
                for s, (a, b) in zip((it.s1, it.s2), it.spans):
                    ids, _ = token_span(tok, s, a, b)
                    assert s[a:b] in tok.decode(ids), (s, s[a:b])
                    rep = mode_input(tok, s, (a, b), "repeat")
                    assert s[a:b] in tok.decode(tok(rep.text)["input_ids"][rep.span[0]:rep.span[1]])


def test_wic_scores_do_not_depend_on_batch_composition_on_gemma(gemma):
    items = locate_items(read_wic(DATA / "en" / "dev.data.txt", DATA / "en" / "dev.gold.txt"), Counter(), Counter())
    train = load_wic(DATA / "en", splits=["train"], max_items=8).splits["train"]
    for mode in ("base", "prompt"):
        probe = PairProbe(gemma, layers=[1, 4, 8], batch_size=4)
        probe.fit(probe.vectors(mode_sides(gemma.tokenizer, train, mode)))
        full = probe.cosines(probe.vectors(mode_sides(gemma.tokenizer, items[:4], mode)))
        alone = np.concatenate([probe.cosines(probe.vectors(mode_sides(gemma.tokenizer, [it], mode)))
                                for it in items[:2]])
        np.testing.assert_allclose(alone, full[:2], atol=2e-4)
        assert torch.isfinite(torch.as_tensor(full)).all()
