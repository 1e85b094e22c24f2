"""Linguistic regions: importance, masks, bit-exact ablation, files, freezing, bad input (the experiments: test_regions_experiments.py)."""
from __future__ import annotations

import math

import pytest
import torch

from hub import regions as R
from hub.lens import LogitLens
from hub.perplexity import batch_nll, perplexity, token_windows, window_nll
from hub.models.tiny import tiny_model

TEXTS = {
    "en": "The cat sat on the mat. The capital of France is Paris. one two three four five six seven eight. " * 4,
    "fr": "Le chat est sur le tapis. Français: fleur. Le chien dort dans la maison ce soir. " * 4,
    "de": "Der Hund schläft. Deutsch: Blume. Die Katze sitzt auf der Matte und schläft. " * 4,
}
WINDOW = 24


@pytest.fixture()
def hm():
    return tiny_model("llama")


@pytest.fixture()
def imp(hm):
    return R.accumulate_importance(hm, TEXTS, tokens=96, window=WINDOW, batch_size=2)


def params_copy(hm):
    return {n: p.detach().clone() for n, p in hm.model.named_parameters()}


def same_params(hm, ref) -> bool:
    return all(torch.equal(p, ref[n]) for n, p in hm.model.named_parameters())


# ----------------------------------------------------------------------------- perplexity
def test_windows_have_fixed_length_and_bos(hm):
    ws = token_windows(hm, TEXTS["en"], WINDOW, max_tokens=80)
    bos = hm.tokenizer.bos_token_id
    assert len(ws) == 80 // (WINDOW - 1)
    assert all(len(w) == WINDOW and w[0] == bos for w in ws)


def test_perplexity_matches_hf_loss_and_ignores_batch_size(hm):
    ws = token_windows(hm, TEXTS["fr"], WINDOW)
    ids = torch.tensor([ws[0]])
    with torch.no_grad():
        hf = hm.model(input_ids=ids, labels=ids).loss
    assert window_nll(hm, ws[:1])[0].item() == pytest.approx(hf.item(), abs=1e-5)
    a, b = window_nll(hm, ws, batch_size=1), window_nll(hm, ws, batch_size=3)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    p = perplexity(hm, TEXTS["fr"], window=WINDOW, max_tokens=None)
    assert p.value == pytest.approx(math.exp(a.mean().item()), rel=1e-5)
    assert p.ci_low < p.value < p.ci_high and p.n_windows == len(ws)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2", "qwen2"])  # gemma3: logit softcap
def test_streamed_nll_equals_the_models_own_logits(family):
    """The fast path (stop after the last block, lens in vocabulary blocks) vs HF's logits,
    also with a shorter, left-padded window in the batch."""
    m = tiny_model(family)
    ws = token_windows(m, TEXTS["de"], 12)
    ws = ws[:3] + [ws[3][:5]]  # one short window: padded in the batch
    fast = window_nll(m, ws, batch_size=4)
    full = window_nll(m, ws, batch_size=4, streamed=False)
    torch.testing.assert_close(fast, full, atol=2e-5, rtol=1e-5)
    lens = LogitLens(m, vocab_chunk_bytes=1)  # several vocabulary blocks
    st = m.capture([ws[0]], layers=[m.n_layers], positions="all")[0][0]  # [seq, d]
    lp = torch.log_softmax(lens.logits(st[:-1]), -1).gather(1, torch.tensor(ws[0][1:])[:, None])[:, 0]
    torch.testing.assert_close(lens.target_logprob(st[:-1], torch.tensor(ws[0][1:])), lp, atol=2e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="targets must have shape"):
        lens.target_logprob(st[:-1], torch.tensor(ws[0]))


# ----------------------------------------------------------------------------- importance
@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_importance_shapes_nonnegative_block_matrices_only(family):
    hm = tiny_model(family)
    imp = R.accumulate_importance(hm, TEXTS, tokens=64, window=WINDOW, batch_size=2)
    in_blocks = {id(p) for p in hm.blocks.parameters()}
    named = dict(hm.model.named_parameters())
    assert imp.languages == list(TEXTS) and imp.names
    for lang in TEXTS:
        for n, s in imp.per_language[lang].items():
            assert id(named[n]) in in_blocks and named[n].ndim == 2
            assert s.shape == named[n].shape and s.dtype == torch.float32
            assert bool((s >= 0).all()) and bool(torch.isfinite(s).all())
        assert sum(float(s.sum()) for s in imp.per_language[lang].values()) > 0
    assert all(p.grad is None for p in hm.model.parameters())  # grads freed
    assert all(p.requires_grad for p in hm.model.parameters())  # flags restored


@pytest.mark.parametrize("reduce", ["dataset", "batch"])
def test_importance_equals_manual_grad_times_weight_on_one_batch(hm, reduce):
    text = TEXTS["de"]
    ws = token_windows(hm, text, WINDOW, max_tokens=2 * (WINDOW - 1))
    assert len(ws) == 2
    imp = R.accumulate_importance(hm, {"de": text}, tokens=2 * (WINDOW - 1), window=WINDOW, batch_size=2,
                                  reduce=reduce)
    hm.model.zero_grad(set_to_none=True)
    nll, n = batch_nll(hm, ws)
    (nll.sum() / n.sum()).backward()
    named = dict(hm.model.named_parameters())
    for name, s in imp.per_language["de"].items():
        manual = (named[name].grad * named[name]).abs()
        torch.testing.assert_close(s, manual, atol=1e-7, rtol=1e-4)
    hm.model.zero_grad(set_to_none=True)


def test_total_is_sum_over_languages_and_can_be_kept_alone(hm, imp):
    for n in imp.names:
        torch.testing.assert_close(imp.total[n], sum(imp.per_language[lang][n] for lang in TEXTS))
    lean = R.accumulate_importance(hm, TEXTS, tokens=96, window=WINDOW, batch_size=2, keep_languages=False)
    assert lean.per_language == {} and lean.tokens == imp.tokens
    for n in imp.names:
        torch.testing.assert_close(lean.total[n], imp.total[n])
    rs = R.build_regions(lean, k=0.1, mono=False)
    assert rs.mono() == [] and rs["core"].count() > 0
    with pytest.raises(ValueError, match="keep_languages"):
        R.build_regions(lean, k=0.1)


def test_include_exclude_patterns(hm):
    sel = R.select_parameters(hm, include=["*.mlp.*"], exclude=["*.down_proj.*"])
    assert sel and all(".mlp." in n and "down_proj" not in n for n in sel)
    with pytest.raises(ValueError, match="no parameters"):
        R.select_parameters(hm, include=["nothing.*"])


# ----------------------------------------------------------------------------- masks
@pytest.mark.parametrize("k", [0.01, 0.1, 0.5, 1.0])
def test_mask_fraction_is_k_per_matrix(imp, k):
    rs = R.build_regions(imp, k=k)
    for name in ("core", "bottom", "random"):
        m = rs[name]
        for n, idx in m.index.items():
            numel = math.prod(m.shapes[n])
            assert idx.numel() == R.n_of(numel, k) and idx.numel() == max(1, round(k * numel))
            assert torch.equal(idx, idx.unique())  # sorted, no duplicates


def test_core_is_top_and_bottom_is_bottom(imp):
    rs = R.build_regions(imp, k=0.1)
    total = imp.total
    for n, t in total.items():
        flat = t.reshape(-1)
        core, bottom = rs["core"].index[n], rs["bottom"].index[n]
        rest = torch.ones_like(flat, dtype=torch.bool)
        rest[core] = False
        assert flat[core].min() >= flat[rest].max()
        rest = torch.ones_like(flat, dtype=torch.bool)
        rest[bottom] = False
        assert flat[bottom].max() <= flat[rest].min()


def test_monolingual_regions_disjoint_and_own(imp):
    rs = R.build_regions(imp, k=0.05)
    mono = rs.mono()
    assert mono == [f"mono:{lang}" for lang in TEXTS]
    for n in imp.names:
        sets = {m: set(rs[m].index[n].tolist()) for m in mono}
        for a in mono:
            for b in mono:
                if a != b:
                    assert not sets[a] & sets[b]
        for lang in TEXTS:
            own = set(R.topk_index(imp.per_language[lang][n], 0.05).tolist())
            others = set().union(*(set(R.topk_index(imp.per_language[o][n], 0.05).tolist()) for o in TEXTS if o != lang))
            assert sets[f"mono:{lang}"] == own - others


def test_random_region_depends_on_seed_only(imp):
    a, b, c = (R.build_regions(imp, k=0.1, seed=s, mono=False) for s in (0, 0, 1))
    n = imp.names[0]
    assert torch.equal(a["random"].index[n], b["random"].index[n])
    assert not torch.equal(a["random"].index[n], c["random"].index[n])


# ----------------------------------------------------------------------------- ablation
def test_ablation_zeroes_inside_and_restores_bit_for_bit(hm, imp):
    rs = R.build_regions(imp, k=0.05)
    ref = params_copy(hm)
    named = dict(hm.model.named_parameters())
    with R.ablate(hm, rs["core"]):
        for n, idx in rs["core"].index.items():
            assert bool((named[n].reshape(-1)[idx] == 0).all())
        assert not same_params(hm, ref)
    assert same_params(hm, ref)
    with R.ablate(hm, rs["none"]):
        assert same_params(hm, ref)


def test_ablation_restores_on_exception(hm, imp):
    rs = R.build_regions(imp, k=0.2)
    ref = params_copy(hm)
    with pytest.raises(RuntimeError, match="boom"):
        with R.ablate(hm, rs["core"]):
            raise RuntimeError("boom")
    assert same_params(hm, ref)
    with pytest.raises(RuntimeError, match="inner"):
        with R.edit(hm, rs["random"], R.scale_by(3.0)), R.ablate(hm, rs["core"]):
            raise RuntimeError("inner")
    assert same_params(hm, ref)


def test_ablating_core_changes_loss_more_than_nothing(hm, imp):
    """Zeroing the core (the top 5% by the Taylor score |w * dL/dw|, a first-order estimate of
    the loss change) moves the loss more than zeroing as many random parameters, and far more
    than zeroing the bottom 5% (whose first-order estimate is orders of magnitude smaller; 5x is
    a loose bound for the higher-order terms); zeroing nothing leaves it exactly as it was."""
    rs = R.build_regions(imp, k=0.05)
    base = perplexity(hm, TEXTS["en"], window=WINDOW).value
    delta = {}
    for name in ("core", "random", "bottom", "none"):
        with R.ablate(hm, rs[name]):
            delta[name] = abs(perplexity(hm, TEXTS["en"], window=WINDOW).value - base)
    assert delta["none"] == 0.0 and perplexity(hm, TEXTS["en"], window=WINDOW).value == base
    assert delta["core"] > delta["random"] and delta["core"] > 5 * delta["bottom"], delta
    taylor = {n: sum(float(imp.total[p].reshape(-1)[i].sum()) for p, i in rs[n].index.items())
              for n in ("core", "bottom")}
    assert taylor["core"] > 100 * taylor["bottom"], taylor  # what the 5x above rests on


# ----------------------------------------------------------------------------- files
def test_save_load_round_trip(hm, imp, tmp_path):
    rs = R.build_regions(imp, k=0.05)
    path = rs.save(tmp_path / "regions.safetensors")
    back = R.RegionSet.load(path, hm)
    assert back.names == rs.names
    assert back.meta["languages"] == list(TEXTS) and back.meta["k"] == 0.05
    assert back.meta["tokens"] == imp.tokens and back.meta["identity"] == imp.identity
    for name in rs.names:
        for n in rs[name].index:
            assert torch.equal(back[name].index[n], rs[name].index[n])


def test_loading_against_another_model_fails(imp, tmp_path):
    rs = R.build_regions(imp, k=0.05)
    path = rs.save(tmp_path / "regions.safetensors")
    with pytest.raises(ValueError, match="shape"):
        R.RegionSet.load(path, tiny_model("llama", d=48))
    with pytest.raises(ValueError, match="does not have"):
        R.RegionSet.load(path, tiny_model("gpt2"))
    other_weights = tiny_model("llama", seed=1)
    with pytest.raises(ValueError, match="other weights"):
        R.RegionSet.load(path, other_weights)
    R.RegionSet.load(path, other_weights, check_weights=False)  # allowed on purpose
    with pytest.raises(ValueError, match="shape"):
        with R.ablate(tiny_model("llama", d=48), rs["core"]):
            pass
    bogus = tmp_path / "other.safetensors"
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(bogus))
    with pytest.raises(ValueError, match="not a semantic-hub region file"):
        R.RegionSet.load(bogus)


def test_shape_checksum_catches_dtype_change(hm, imp):
    rs = R.build_regions(imp, k=0.05)
    hm.model.to(torch.float64)
    with pytest.raises(ValueError, match="checksum"):
        rs.check(hm, check_weights=False)


# ----------------------------------------------------------------------------- dimensions
def test_outlier_dimensions_find_a_planted_massive_dimension(hm):
    with torch.no_grad():
        hm.embed.weight[:, 7] += 500.0  # a massive activation in dim 7 of every token
    dims, score = R.outlier_dimensions(hm, TEXTS, top=2, window=WINDOW, tokens=40)
    assert dims[0] == 7 and score.shape == (hm.d_model,)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_dimension_mask_reads_columns_writes_rows(family):
    hm = tiny_model(family)
    imp = R.accumulate_importance(hm, {"en": TEXTS["en"]}, tokens=48, window=WINDOW)
    full = R.build_regions(imp, k=1.0, mono=False)["core"]  # every entry, to see the geometry
    dim = 5
    m = R.dimension_mask(hm, full, dim)
    modules = dict(hm.model.named_modules())
    d = hm.d_model
    for n, idx in m.index.items():
        shape = m.shapes[n]
        mod = modules[n.rsplit(".", 1)[0]]
        if idx.numel() == 0:
            continue
        rows, cols = idx // shape[1], idx % shape[1]
        writer = any(__import__("fnmatch").fnmatchcase(n, w) for w in R.WRITERS)
        conv1d = type(mod).__name__ == "Conv1D"
        # Linear weight [out, in]: read = column, write = row; Conv1D [in, out]: the reverse
        on_rows = writer != conv1d
        coord = rows if on_rows else cols
        assert bool((coord == dim).all()) and idx.numel() == (shape[1] if on_rows else shape[0])
        assert shape[0 if on_rows else 1] == d
    assert m.count() > 0
    with pytest.raises(IndexError):
        R.dimension_mask(hm, full, hm.d_model)


# ----------------------------------------------------------------------------- freezing
def test_freezing_keeps_masked_entries_bit_for_bit(hm, imp):
    rs = R.build_regions(imp, k=0.1)
    ws = token_windows(hm, TEXTS["fr"], WINDOW)
    ref = params_copy(hm)
    names = list(R.select_parameters(hm))
    with R.restoring(hm, names):
        losses = R.continue_pretraining(hm, ws, steps=4, lr=1e-2, batch_size=2, freeze=rs["core"], weight_decay=0.1)
        named = dict(hm.model.named_parameters())
        for n, idx in rs["core"].index.items():
            assert torch.equal(named[n].reshape(-1)[idx], ref[n].reshape(-1)[idx])
            assert not torch.equal(named[n], ref[n])  # the rest trained
        assert torch.equal(named["model.embed_tokens.weight"], ref["model.embed_tokens.weight"])  # not trainable
        assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert same_params(hm, ref)
    assert all(p.grad is None for p in hm.model.parameters())


def test_training_without_freeze_moves_core(hm, imp):
    rs = R.build_regions(imp, k=0.1)
    ws = token_windows(hm, TEXTS["fr"], WINDOW)
    ref = params_copy(hm)
    with R.restoring(hm, list(R.select_parameters(hm))):
        R.continue_pretraining(hm, ws, steps=2, lr=1e-2, batch_size=2)
        named = dict(hm.model.named_parameters())
        n, idx = next(iter(rs["core"].index.items()))
        assert not torch.equal(named[n].reshape(-1)[idx], ref[n].reshape(-1)[idx])


# ----------------------------------------------------------------------------- bad input
def test_unknown_region_name(imp):
    rs = R.build_regions(imp, k=0.05)
    with pytest.raises(KeyError, match="unknown region 'cor'.*core"):
        rs["cor"]
    with pytest.raises(KeyError, match="unknown region 'mono:xx'"):
        rs.resolve(["core", "mono:xx"])
    assert rs.resolve(["none", "mono"]) == ["none", "mono:en", "mono:fr", "mono:de"]


@pytest.mark.parametrize("k", [0, -0.1, 1.5, float("nan"), "abc"])
def test_k_outside_unit_interval(imp, k):
    with pytest.raises(ValueError, match=r"k must be a fraction in \(0, 1\]"):
        R.build_regions(imp, k=k)


def test_empty_text_for_a_language(hm):
    with pytest.raises(ValueError, match="language 'fr': empty text"):
        R.accumulate_importance(hm, {"en": TEXTS["en"], "fr": "  \n"}, tokens=32, window=WINDOW)
    with pytest.raises(ValueError, match="empty text"):
        perplexity(hm, "", window=WINDOW)
    from hub.steps.regions import split_text
    with pytest.raises(ValueError, match="language 'de': empty text"):
        split_text("\n\n", name="language 'de'")


# ----------------------------------------------------------------------------- real model
@pytest.mark.integration
def test_core_ablation_on_gemma(gemma):
    """Gemma-3-270m with tiny budgets (3 languages x 128 scoring and 128 evaluation tokens).

    Asserts the paper's headline, which the real model does reproduce at these budgets: zeroing
    the core 1% raises perplexity more than 10x above zeroing a random 1%, in every language
    (the full-budget numbers are in the regions_ablation report). Also: results are finite and
    the weights are bit-for-bit back afterwards.
    """
    texts = {lang: TEXTS[lang] * 3 for lang in TEXTS}
    ref = {n: p.detach().clone() for n, p in R.select_parameters(gemma).items()}
    imp = R.accumulate_importance(gemma, texts, tokens=128, window=64, batch_size=2)
    rs = R.build_regions(imp, k=0.01, mono=False)
    ppl = {}
    for region in ("none", "core", "random"):
        with R.ablate(gemma, rs[region]):
            ppl[region] = {lang: perplexity(gemma, t, window=64, max_tokens=128).value for lang, t in texts.items()}
    assert all(math.isfinite(v) for r in ppl.values() for v in r.values())
    named = dict(gemma.model.named_parameters())
    assert all(torch.equal(named[n], v) for n, v in ref.items())
    for lang in texts:
        assert ppl["core"][lang] > 10 * ppl["random"][lang], ppl
