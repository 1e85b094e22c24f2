"""Model core: batch composition, position modes, early stop, lens details, hooks, bad input.

Parity with HF (capture, left padding, lens == logits) for every family: tests/test_family_parity.py.
"""
import math

import pytest
import torch

from hub.models.families import Family, family_for
from hub.lens import LogitLens
from hub.models.tiny import tiny_model

TEXTS = ["The cat sat on the mat.", "Le chat", "5+3=8 and one two three four", "猫在垫子上。"]


def test_results_do_not_depend_on_batch_composition():
    hm = tiny_model("llama")
    a = hm.capture(TEXTS, layers=[2], positions="last", batch_size=2)
    b = hm.capture(TEXTS[::-1] + ["an extra, much longer item that changes the padding of the batch"],
                   layers=[2], positions="last", batch_size=5)
    torch.testing.assert_close(a, b[:4].flip(0), atol=1e-4, rtol=0)


def test_position_modes_agree_with_all():
    hm = tiny_model("gemma3")
    full = hm.capture(TEXTS, layers=[0, 1, 3], positions="all")
    last = hm.capture(TEXTS, layers=[0, 1, 3], positions="last")
    mean = hm.capture(TEXTS, layers=[0, 1, 3], positions="mean")
    idx = hm.capture(TEXTS, layers=[0, 1, 3], positions=[1, -1])
    span = hm.capture(TEXTS, layers=[0, 1, 3], positions="mean", spans=[(1, 3)] * 4)
    for i in range(len(TEXTS)):
        torch.testing.assert_close(last[i], full[i][:, -1])
        torch.testing.assert_close(mean[i], full[i][:, 1:].mean(1), atol=1e-5, rtol=1e-5)  # BOS excluded
        torch.testing.assert_close(idx[i], full[i][:, [1, -1]])
        torch.testing.assert_close(span[i], full[i][:, 1:3].mean(1), atol=1e-5, rtol=1e-5)
    assert last.shape == (4, 3, hm.d_model) and idx.shape == (4, 3, 2, hm.d_model)


def test_forward_stops_after_deepest_requested_layer():
    hm = tiny_model("llama", layers=4)
    calls = []
    handles = [b.register_forward_hook(lambda m, a, o, k=k: calls.append(k)) for k, b in enumerate(hm.blocks)]
    head_calls = []
    handles.append(hm.unembed.register_forward_hook(lambda *a: head_calls.append(1)))
    try:
        hm.capture(TEXTS, layers=[0, 2], positions="last")
        assert sorted(set(calls)) == [0, 1]  # blocks 1 and 2 only
        calls.clear()
        hm.capture(TEXTS, layers="all", positions="last")
        assert sorted(set(calls)) == [0, 1, 2, 3]
        assert not head_calls, "the unembedding must never run during capture"
    finally:
        for h in handles:
            h.remove()


def test_lens_applies_softcap_and_norm_switch():
    hm = tiny_model("gemma3")
    assert hm.softcap == 30.0
    st = hm.capture(TEXTS[:2], layers=[1, 3], positions="last")
    z = LogitLens(hm).logits(st)
    assert z.shape == (2, 2, hm.vocab_size) and z.abs().max() <= 30.0
    raw = LogitLens(hm, apply_norm=False).logits(st)
    assert not torch.allclose(raw, z)
    manual = torch.tanh(hm.unembed(st) / 30.0) * 30.0
    torch.testing.assert_close(raw, manual, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("family", ["qwen2", "gemma3"])  # gemma3: logit softcap
@pytest.mark.parametrize("vocab_chunk_bytes", [1, 2**30])  # 128-token blocks (4 of them), one block
def test_lens_reduce_matches_full_softmax(family, vocab_chunk_bytes):
    hm = tiny_model(family)
    st = hm.capture(TEXTS, layers="all", positions="last")
    lens = LogitLens(hm, max_chunk_bytes=4 * hm.vocab_size * 3,  # several row chunks
                     vocab_chunk_bytes=vocab_chunk_bytes)
    # sets whose tokens fall in different vocabulary blocks, one token repeated across sets
    sets = [[[5, 6, 7, 300], [10, 130, 399]] for _ in TEXTS]
    red = lens.reduce(st, token_sets=sets, top_k=3)
    p = torch.softmax(lens.logits(st), -1)
    torch.testing.assert_close(red["set_prob"][..., 0], p[..., [5, 6, 7, 300]].sum(-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(red["set_prob"][..., 1], p[..., [10, 130, 399]].sum(-1), atol=1e-6, rtol=1e-5)
    ent = -(p * p.log()).sum(-1) / torch.log(torch.tensor(2.0))
    torch.testing.assert_close(red["entropy"], ent, atol=1e-4, rtol=1e-4)
    top = p.topk(3, -1)
    assert torch.equal(red["top_ids"], top.indices)
    torch.testing.assert_close(red["top_probs"], top.values, atol=1e-6, rtol=1e-5)


def test_lens_reduce_peaked_distribution_entropy_near_zero():
    """A state aligned with one unembedding row: entropy ~ 0 bits, no cancellation blow-up."""
    hm = tiny_model("qwen2")
    lens = LogitLens(hm, apply_norm=False, vocab_chunk_bytes=1)
    W = hm.unembed.weight.detach()
    h = (W[42] * 400.0 / W[42].norm() ** 2).reshape(1, 1, -1)  # logit of token 42 = 400
    red = lens.reduce(h, token_sets=[[[42]]])
    p = torch.softmax(lens.logits(h), -1)
    assert float(red["set_prob"][0, 0, 0]) == pytest.approx(float(p[0, 0, 42]), abs=1e-6)
    ent = float(-(p * p.clamp_min(1e-45).log()).sum() / math.log(2))
    assert float(red["entropy"][0, 0]) == pytest.approx(ent, abs=1e-3)


def test_token_energy_matches_definition():
    hm = tiny_model("gemma3")
    lens = LogitLens(hm)
    h = torch.randn(5, hm.d_model)
    g = hm.final_norm(torch.ones(1, hm.d_model))[0]
    U = hm.unembed.weight * g
    U = U / U.norm(dim=1, keepdim=True)
    hh = h / h.norm(dim=1, keepdim=True)
    V = U.shape[0]
    ref = ((U @ hh.T) ** 2).mean(0).sqrt() / (((U @ U.T) ** 2).sum() / V**2).sqrt()
    torch.testing.assert_close(lens.token_energy(h), ref.detach(), atol=1e-5, rtol=1e-4)
    # invariant to the scale of the state
    torch.testing.assert_close(lens.token_energy(3 * h), lens.token_energy(h))


def test_bad_input_errors():
    hm = tiny_model("llama")
    with pytest.raises(IndexError, match=r"valid layers are 0\.\.3"):
        hm.capture(TEXTS, layers=[4])
    with pytest.raises(IndexError, match="valid layers"):
        hm.capture(TEXTS, layers=[-1])
    with pytest.raises(ValueError, match="input 1 is an empty prompt"):
        hm.capture(["ok", "  "])
    with pytest.raises(ValueError, match="positions='first'"):
        hm.capture(TEXTS, positions="first")
    with pytest.raises(IndexError, match="outside the sequence"):
        hm.capture(["Le chat"], positions=[50])
    with pytest.raises(TypeError, match="single string"):
        hm.capture("a string, not a list")


def test_unknown_family_says_what_to_register():
    class Fake(torch.nn.Module):
        class config:
            model_type = "my_new_arch"
    with pytest.raises(KeyError, match="register_family"):
        family_for(Fake())


def test_hooks_removed_even_on_exception():
    hm = tiny_model("llama")
    before = [len(b._forward_hooks) + len(b._forward_pre_hooks) for b in hm.blocks]

    def boom(h):
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        with hm.hooks({0: boom, 2: boom}):
            hm.forward_batch(hm.collate(hm.tokenize(TEXTS)))
    after = [len(b._forward_hooks) + len(b._forward_pre_hooks) for b in hm.blocks]
    assert before == after


def test_register_custom_family_works():
    # a family registered at run time is found by model_type and used for capture
    from hub.models import families
    hm = tiny_model("llama")
    fam = Family("custom", ("custom_llama_test",), body="model")
    families.register_family(fam)
    try:
        hm.model.config.model_type = "custom_llama_test"
        assert family_for(hm.model) is fam
    finally:
        del families.FAMILIES["custom_llama_test"]
        hm.model.config.model_type = "llama"
