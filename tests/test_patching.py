"""Last-token activation patching: no-op on own states, the layer convention, batching, bad input."""
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from hub.cli import CONF_DIR, run_job
from hub.models.tiny import tiny_model
from hub.patching import patch_last_token

PROMPTS = ["The cat sat on the mat.", "Le chat", "5+3=8 and one two", "猫在垫子上。"]
SETS = [[[5, 9, 11], [40], [77, 78]]] * len(PROMPTS)


@pytest.fixture(scope="module", params=["llama", "gemma3"])
def hm(request):
    return tiny_model(request.param)


def own_next_probs(hm, prompts, sets):
    out = []
    for p, ss in zip(prompts, sets):
        batch = hm.collate(hm.tokenize([p]))
        with torch.no_grad():
            pr = torch.softmax(hm.forward_batch(batch, logits_to_keep=1).logits[0, -1].float(), -1)
        out.append([float(pr[s].sum()) for s in ss])
    return torch.tensor(out)  # [n, sets]


def test_patching_own_states_is_a_no_op(hm):
    src = hm.capture(PROMPTS, layers="all", positions="last")
    starts = list(range(hm.n_layers + 2))
    p = patch_last_token(hm, PROMPTS, src, starts, SETS, batch_size=7)
    ref = own_next_probs(hm, PROMPTS, SETS)
    for j in range(len(starts)):
        torch.testing.assert_close(p[:, j], ref, atol=1e-5, rtol=0)


def test_layer_k_is_the_output_of_block_k(hm):
    """Writing the source's layer-L state (last block output) at layer L gives the source's own
    next-token distribution: only the final norm and unembedding follow. Were layer k the input
    of block k, the last block would still run on it and the distributions would differ."""
    src_prompts, tgt_prompts = PROMPTS[:2], PROMPTS[2:]
    src = hm.capture(src_prompts, layers="all", positions="last")
    L = hm.n_layers
    got = patch_last_token(hm, tgt_prompts, src, [L, L + 1], SETS[:2], span=1)
    torch.testing.assert_close(got[:, 0], own_next_probs(hm, src_prompts, SETS[:2]), atol=1e-5, rtol=0)
    assert not torch.allclose(got[:, 1], got[:, 0], atol=1e-4)  # the unpatched run differs
    # patching every layer from k on ends in the source's distribution whatever k is
    got0 = patch_last_token(hm, tgt_prompts, src, list(range(L + 1)), SETS[:2], span=None)
    for j in range(L + 1):
        torch.testing.assert_close(got0[:, j], own_next_probs(hm, src_prompts, SETS[:2]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("span", [None, 1, 2])
def test_batched_equals_one_by_one(hm, span):
    src = hm.capture(PROMPTS[::-1], layers="all", positions="last")
    starts = list(range(hm.n_layers + 1))
    batched = patch_last_token(hm, PROMPTS, src, starts, SETS, span=span, batch_size=64)
    for i, p in enumerate(PROMPTS):
        for j, k in enumerate(starts):
            one = patch_last_token(hm, [p], src[i:i + 1], [k], SETS[i:i + 1], span=span, batch_size=1)
            torch.testing.assert_close(batched[i, j], one[0, 0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("span", [None, 1, 2])
def test_prefix_cache_equals_full_forwards(hm, span):
    """The default path (prompt prefix once, last token per row on a copied KV cache) gives the
    numbers of running every (prompt, start) row in full, also with mixed prompts per batch."""
    src = hm.capture(PROMPTS[::-1], layers="all", positions="last")
    starts = list(range(hm.n_layers + 2))
    fast = patch_last_token(hm, PROMPTS, src, starts, SETS, span=span, batch_size=7)  # chunks mix prompts
    full = patch_last_token(hm, PROMPTS, src, starts, SETS, span=span, batch_size=7, prefix_cache=False)
    torch.testing.assert_close(fast, full, atol=1e-5, rtol=0)
    one_token = hm.tokenize(["x"])[0][-1:]  # a one-token prompt has no prefix: the full path serves it
    got = patch_last_token(hm, [one_token], src[:1], starts, SETS[:1], span=span)
    ref = patch_last_token(hm, [one_token], src[:1], starts, SETS[:1], span=span, prefix_cache=False)
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_middle_patch_changes_the_output(hm):
    src = hm.capture(PROMPTS[::-1], layers="all", positions="last")
    p = patch_last_token(hm, PROMPTS, src, [1, hm.n_layers + 1], SETS)
    assert (p[:, 0] - p[:, 1]).abs().max() > 1e-4


def test_bad_inputs_name_what_was_expected(hm):
    src = hm.capture(PROMPTS[:2], layers="all", positions="last")
    with pytest.raises(ValueError, match=r"expected \[2, "):
        patch_last_token(hm, PROMPTS[:2], src[:, :2], [1], SETS[:2])
    with pytest.raises(IndexError, match="out of range"):
        patch_last_token(hm, PROMPTS[:2], src, [hm.n_layers + 2], SETS[:2])
    with pytest.raises(ValueError, match="span=0"):
        patch_last_token(hm, PROMPTS[:2], src, [1], SETS[:2], span=0)
    with pytest.raises(ValueError, match="token-set lists"):
        patch_last_token(hm, PROMPTS[:2], src, [1], SETS[:1])


def test_patch_concept_experiment_smoke(tmp_path):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["model=tiny_llama", "progress=false", "experiment=patch_concept",
                                           "experiment.max_pairs=6", "experiment.mean_langs=[de,fr]"])
    run_job(cfg, tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    pat = df[df["metric"] == "patched_prob"]
    assert set(pat["source"]) == {"source", "mean over languages", "random concept", "own states"}
    assert set(pat["lang"]) == {"Cs in Y", "Cs in B", "Ct in Y", "Ct in B"}
    assert set(pat["layer"]) == set(range(4))  # tiny_llama: 3 blocks -> starts 0..3
    # the own-states control is a no-op at every start
    own = pat[pat["source"] == "own states"].set_index(["lang", "layer"])["value"]
    unp = df[(df["metric"] == "unpatched_prob") & (df["source"] == "own states")].set_index("lang")["value"]
    for (lang, _), v in own.items():
        assert abs(v - unp[lang]) < 1e-5
    assert (df["ci_low"] >= 0).all() and (df["ci_high"] <= 1).all()
    text = (tmp_path / "report.md").read_text()
    assert "Patching: concept vs language" in text and (tmp_path / "patching_probs.png").is_file()
