"""The tuned lens (issue 15): identity = logit lens, the last layer = the model, training lowers
held-out KL at every layer, a lens for another model is refused, the tuned-lens library's
published format (config.json + params.pt) round-trips and reads as the library applies it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hub.errors import UserError
from hub.lens import LogitLens, TunedLens, make_lens
from hub.lens.tuned import save_published
from hub.lens.tuning import FitConfig, final_targets, fit, held_out_kl
from hub.models.tiny import tiny_model

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["The cat sat on the mat and looked at the dog.", "Le chat est sur le tapis rouge.",
         "5+3=8 and 7+2=9", "def add(a, b): return a + b", "Der Hund schläft im Haus.", "猫 sits here"]


def _random_lens(hm, scale=0.3, seed=1):
    lens = TunedLens.identity(hm)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        lens.A.copy_(scale * torch.randn(lens.A.shape, generator=g) / hm.d_model ** 0.5)
        lens.b.copy_(scale * torch.randn(lens.b.shape, generator=g))
    return lens


def test_identity_tuned_lens_equals_the_logit_lens():
    hm = tiny_model("gemma3")  # softcapped logits, Gemma's (1 + w) norm
    states = hm.capture(TEXTS, layers="all", positions="last")  # [n, L+1, d]
    layers = list(range(states.shape[1]))
    ref, lens = LogitLens(hm, vocab_chunk_bytes=1), TunedLens.identity(hm, vocab_chunk_bytes=1)
    sets = [[[5, 6, 7], [100, 200]]] * len(TEXTS)
    r0, r1 = ref.reduce(states, token_sets=sets, top_k=3), lens.reduce(states, token_sets=sets, top_k=3, layers=layers)
    for key in ("entropy", "set_prob", "top_ids", "top_probs"):
        torch.testing.assert_close(r1[key], r0[key])
    torch.testing.assert_close(lens.logits(states, layers), ref.logits(states))


def test_transform_is_h_plus_A_h_plus_b_per_layer_and_the_last_layer_is_the_model():
    hm = tiny_model("llama")
    lens = _random_lens(hm)
    states = hm.capture(TEXTS, layers="all", positions="last")  # [n, L+1, d]
    L = hm.n_layers
    out = lens.transform(states, list(range(L + 1)))
    for k in range(L):  # one translator per layer, nn.Linear convention (out x in)
        want = states[:, k] + states[:, k] @ lens.A[k].T + lens.b[k]
        torch.testing.assert_close(out[:, k], want)
    assert (out[:, 1] - states[:, 1]).abs().max() > 1e-3  # the translators do something below L
    # a reordered, partial layer list picks each layer's own translator
    torch.testing.assert_close(lens.transform(states[:, [2, 0]], [2, 0]), out[:, [2, 0]])
    # at the last layer the tuned lens (trained or not) reads the model's own logits
    with torch.no_grad():
        ids = hm.collate(hm.tokenize(TEXTS))
        logits = hm.model(input_ids=ids.input_ids, attention_mask=ids.attention_mask,
                          position_ids=ids.position_ids).logits[:, -1]
    torch.testing.assert_close(lens.logits(states[:, L:], [L])[:, 0], logits, atol=1e-4, rtol=1e-4)


def _windows(hm, n, seq=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, hm.vocab_size, (n, seq), generator=g).tolist()


def _data(hm, n, seed):
    ids = _windows(hm, n, seed=seed)
    st = hm.capture(ids, layers="all", positions="all")  # list of [L+1, seq, d]
    states = torch.cat([s.transpose(0, 1) for s in st])  # [N, L+1, d]
    tok = torch.tensor([t for w in ids for t in w])
    return states[:, :-1], states[:, -1], tok


@pytest.mark.parametrize("top_k", [0, 16])  # the full objective and the bounded one
def test_training_lowers_held_out_kl_at_every_layer(top_k):
    torch.manual_seed(0)
    hm = tiny_model("llama")
    with torch.no_grad():  # a peaked final distribution (a random tiny model's is nearly uniform)
        hm.unembed.weight.mul_(20)
    L = hm.n_layers
    tr, tr_final, tr_tok = _data(hm, 128, seed=0)  # 2048 training tokens
    ev, ev_final, _ = _data(hm, 32, seed=1)  # held out
    lens = TunedLens.identity(hm)
    layers = list(range(L))
    before = held_out_kl(lens, ev, layers, ev_final).mean(0)
    logit = held_out_kl(LogitLens(hm), ev, layers, ev_final).mean(0)
    torch.testing.assert_close(torch.tensor(before), torch.tensor(logit))  # identity = the logit lens
    cfg = FitConfig(steps=150, batch_tokens=128, lr=1e-2, top_k=top_k, negatives=64, layers_per_chunk=2)
    losses = fit(lens, tr, layers, final_targets(hm, tr_final, top_k), cfg, input_ids=tr_tok)
    after = held_out_kl(lens, ev, layers, ev_final).mean(0)
    assert (before > 0).all()
    assert (after < 0.95 * before).all(), (before, after)  # every layer improves, relative to its own start
    assert sum(losses[-5:]) < sum(losses[:5])


def test_a_lens_file_for_another_model_is_refused(tmp_path):
    hm = tiny_model("llama")
    path = _random_lens(hm).save(tmp_path / "tuned_lens.safetensors", {"tokens": 10})
    back = TunedLens(hm, path=path)
    assert back.meta["model"] == "tiny_llama" and back.meta["tokens"] == "10"
    torch.testing.assert_close(back.A, _random_lens(hm).A)
    with pytest.raises(UserError, match="trained for model 'tiny_llama'.*not for 'tiny_gemma3'") as e:
        TunedLens(tiny_model("gemma3", layers=2), path=path)  # another architecture and depth
    assert "\n" not in str(e.value)
    other = tiny_model("llama", seed=1)  # same shapes, other weights: the checksum refuses it
    with pytest.raises(UserError, match="a lens for other weights") as e:
        TunedLens(other, path=path)
    assert "\n" not in str(e.value)
    TunedLens(other, path=path, check_weights=False)  # on request
    with pytest.raises(UserError, match="lens.tuned.path is not set.*experiment=train_tuned_lens"):
        make_lens("tuned", hm, path=None)
    (tmp_path / "junk.safetensors").write_text("not a lens")
    with pytest.raises(UserError, match="is not a safetensors file"):
        TunedLens(hm, path=tmp_path / "junk.safetensors")


def test_cli_refuses_a_lens_for_other_weights_in_one_line(tmp_path):
    path = _random_lens(tiny_model("llama", seed=1)).save(tmp_path / "tuned_lens.safetensors")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    r = subprocess.run([sys.executable, "-m", "hub.cli", "model=tiny_llama", "progress=false", "cache.enabled=false",
                        "experiment=latent_language", "lens=[logit,tuned]", f"lens.tuned.path={path}",
                        f"hydra.run.dir={tmp_path / 'out'}"], capture_output=True, text=True, cwd=tmp_path, env=env,
                       timeout=300)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1 and "a lens for other weights" in r.stderr, r.stderr
    assert not (tmp_path / "out" / "results.csv").exists()


def test_published_format_round_trip_and_the_library_layout(tmp_path):
    hm = tiny_model("llama")
    lens = _random_lens(hm)
    back = TunedLens(hm, path=save_published(lens, tmp_path / "ours"))
    torch.testing.assert_close(back.A, lens.A)
    torch.testing.assert_close(back.b, lens.b)
    # a directory laid out as the library writes it: layer_translators.state_dict() of nn.Linear
    # residual translators (h + Linear(h)), one per hidden_states index 0..L-1
    d, L = hm.d_model, hm.n_layers
    torch.manual_seed(3)
    translators = torch.nn.ModuleList([torch.nn.Linear(d, d) for _ in range(L)])
    lib = tmp_path / "lib"
    lib.mkdir()
    torch.save(translators.state_dict(), lib / "params.pt")
    (lib / "config.json").write_text(json.dumps({"base_model_name_or_path": "tiny_llama", "d_model": d,
                                                 "num_hidden_layers": L, "bias": True, "unembed_hash": "x",
                                                 "lens_type": "linear_tuned_lens"}))
    got = TunedLens(hm, path=lib)
    states = hm.capture(TEXTS, layers="all", positions="last")
    out = got.transform(states, list(range(L + 1)))
    with torch.no_grad():
        for k in range(L):
            torch.testing.assert_close(out[:, k], states[:, k] + translators[k](states[:, k]))
    torch.testing.assert_close(out[:, L], states[:, L])
    # a library lens for another width / depth is refused in one line
    (lib / "config.json").write_text(json.dumps({"base_model_name_or_path": "big", "d_model": d * 2,
                                                 "num_hidden_layers": L}))
    with pytest.raises(UserError, match="trained for 'big'"):
        TunedLens(hm, path=lib)


def test_train_then_read_with_three_lenses(tmp_path):
    """experiment=train_tuned_lens writes a lens file and a per-layer KL table; latent_language
    reads with lens=[logit,tuned,patchscope] from that file, and at the last layer all agree."""
    import pandas as pd
    from helpers import run_cfg

    train = tmp_path / "train"
    run_cfg(["experiment=train_tuned_lens", "model=tiny_llama", "cache.enabled=false", "experiment.tokens=768",
             "experiment.eval_tokens=96", "experiment.window=32", "experiment.fit.steps=30",
             "experiment.fit.negatives=64", "experiment.log_every=0"], train)
    kl = pd.read_csv(train / "results.csv")
    assert set(kl["lens"]) == {"logit", "tuned"} and sorted(kl["layer"].unique()) == [0, 1, 2]
    assert (train / "tuned_lens_kl.png").exists() and (train / "tuned_lens.safetensors").exists()
    out = tmp_path / "latent"
    report = run_cfg(["experiment=latent_language", "model=tiny_llama", "cache.enabled=false",
                      "lens=[logit,tuned,patchscope]", f"lens.tuned.path={train / 'tuned_lens.safetensors'}",
                      "modality.max_items=4", "experiment.energy=false"], out)
    df = pd.read_csv(out / "results.csv")
    assert list(df["lens"].unique()) == ["logit", "tuned", "patchscope"]
    p = df[df["metric"] == "lang_prob"].pivot_table(index=["lang", "layer"], columns="lens", values="value")
    last = p.xs(p.index.get_level_values("layer").max(), level="layer")
    torch.testing.assert_close(torch.tensor(last["tuned"].to_numpy()), torch.tensor(last["logit"].to_numpy()))
    assert "**tuned lens.**" in report.read_text()
