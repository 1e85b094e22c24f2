"""Integration: SmolLM2-135M (llama family, byte-level BPE) through capture, the lens and steering.

Gemma is the other real text model of the suite; SmolLM2 differs in the ways that matter here:
no logit softcap, no (1 + w) norm, tied embeddings, a byte-level tokenizer, 30 blocks.
"""
import pytest
import torch
from helpers import assert_only_prefixes
from test_position_ids import rotary_position_ids

from hub.intervene import Intervention, next_token_logprobs_with, steer, token_id, unembedding_direction
from hub.lens import LogitLens
from hub.lens.tokensets import scheme_of, token_set

pytestmark = pytest.mark.integration

TEXTS = ["The capital of France is the city of", "Le chat", 'Français: "fleur" - English: "', "1 + 2 ="]


def test_smollm_facts_and_parity_with_hf(smollm):
    assert (smollm.n_layers, smollm.d_model, smollm.vocab_size) == (30, 576, 49152)
    assert smollm.family.name == "llama" and smollm.softcap is None
    text = TEXTS[2]
    ids = torch.tensor([smollm.tokenize([text])[0]])
    with torch.no_grad():
        out = smollm.model(input_ids=ids, output_hidden_states=True)
    st = smollm.capture([text], layers="all", positions="all")[0]  # [layer, seq, d]
    for k in range(smollm.n_layers):  # HF's last entry is normed; ours is the raw block output
        scale = float(out.hidden_states[k][0].abs().max())
        assert (st[k] - out.hidden_states[k][0]).abs().max() <= 1e-5 * max(1.0, scale), k
    z = LogitLens(smollm).logits(st[-1, -1])
    torch.testing.assert_close(z, out.logits[0, -1].float(), atol=1e-3, rtol=1e-4)


def test_smollm_left_padding_and_positions(smollm):
    layers = [0, 10, 20, 30]
    a = smollm.capture(TEXTS, layers=layers, batch_size=len(TEXTS))
    b = torch.cat([smollm.capture([t], layers=layers) for t in TEXTS])
    assert ((a - b).abs().amax(-1) / b.abs().amax(-1)).max() < 1e-4
    lengths = sorted(len(x) for x in smollm.tokenize(TEXTS))
    (pos, *_) = rotary_position_ids(smollm, TEXTS, layers=[1], batch_size=len(TEXTS))
    for row, n in enumerate(lengths):
        assert pos[row, -n:].tolist() == list(range(n))


def test_smollm_lens(smollm):
    st = smollm.capture(TEXTS, layers="all")  # [n, layer, d]
    lens = LogitLens(smollm)
    z = lens.logits(st[0, -1])
    assert smollm.tokenizer.decode(int(z.argmax())) == " Paris"
    tok = smollm.tokenizer
    assert scheme_of(tok).kind == "bytelevel"
    sets = {w: token_set(tok, w) for w in ("Paris", "flower", "花")}
    for w, s in sets.items():
        assert_only_prefixes(tok, w, s)
    assert tok.convert_tokens_to_ids("ĠParis") in sets["Paris"]
    items = [[sorted(sets["Paris"]), sorted(sets["flower"]), sorted(sets["花"])]] * len(TEXTS)
    red = lens.reduce(st, token_sets=items, top_k=3)
    p = torch.softmax(lens.logits(st), -1)  # [n, layer, vocab] reference
    for j, w in enumerate(("Paris", "flower", "花")):
        torch.testing.assert_close(red["set_prob"][..., j], p[..., sorted(sets[w])].sum(-1), atol=1e-6, rtol=1e-4)
    assert torch.equal(red["top_ids"], p.topk(3, -1).indices)
    ent = -(p * p.clamp_min(1e-45).log()).sum(-1) / torch.log(torch.tensor(2.0))
    torch.testing.assert_close(red["entropy"], ent, atol=1e-3, rtol=1e-4)
    # the answer emerges late: more likely than not at the last layer (measured 0.96), not
    # material (< 0.01) in the first third of the blocks (measured 0.000)
    paris = red["set_prob"][0, :, 0]
    assert paris[-1] > 0.5 and paris[:11].max() < 0.01, paris


def test_smollm_steering(smollm):
    """Layer convention on the real model (capture under steering = clean + s*v at block k),
    and adding W_U[' good'] - W_U[' bad'] at a middle layer favours ' good', subtracting it ' bad'."""
    k, p = 15, ["I think the movie was really"]
    clean = smollm.capture(p, layers=[k - 1, k, k + 1], positions="all")[0]
    v = unembedding_direction(smollm, " good", " bad")
    s = float(0.5 * clean[1, -1].norm() / v.norm())
    with steer(smollm, Intervention(v, k, "all", s)):
        st = smollm.capture(p, layers=[k - 1, k, k + 1], positions="all")[0]
    torch.testing.assert_close(st[0], clean[0], atol=0, rtol=0)
    torch.testing.assert_close(st[1], clean[1] + s * v, atol=1e-4, rtol=1e-5)
    assert (st[2] - clean[2]).abs().max() > 1e-2
    a, b = token_id(smollm, " good"), token_id(smollm, " bad")
    diff = {sign: next_token_logprobs_with(smollm, p, Intervention(v, k, "all", sign * s), token_ids=[a, b])
            for sign in (-1.0, 0.0, 1.0)}
    diff = {sign: float(lp[0, 0] - lp[0, 1]) for sign, lp in diff.items()}  # log p(good) - log p(bad)
    assert diff[1.0] > diff[0.0] > diff[-1.0], diff  # measured 9.0 > 3.4 > -2.4
