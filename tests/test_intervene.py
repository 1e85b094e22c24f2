"""Interventions: layer convention, no-op at scale 0, replace, generation modes, padding, cleanup."""
import pytest
import torch

from hub.intervene import (Intervention, from_states, generate_with, mean_difference, next_token_logprobs_with,
                           steer, token_id, unembedding_direction)
from hub.models.tiny import tiny_model

PROMPTS = ["The cat sat on the mat.", "Le chat", "5+3=8 and one two three four", "猫在垫子上。"]


@pytest.fixture(scope="module")
def hm():
    return tiny_model("llama")


def n_hooks(hm) -> int:
    mods = [hm.model, *hm.blocks]
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in mods)


def vec(hm, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(hm.d_model, generator=g) * scale


def logits(hm, prompts, ivs=(), **kw):
    return next_token_logprobs_with(hm, prompts, ivs, **kw)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_add_at_layer_k_edits_block_k_output(family, k):
    """Pins the layer convention: capture at k under steering = clean capture at k + s*v."""
    hm = tiny_model(family)
    v, s = vec(hm), 2.5
    clean = hm.capture(PROMPTS, layers="all", positions="all")
    with steer(hm, Intervention(v, k, "all", s)):
        st = hm.capture(PROMPTS, layers="all", positions="all")
    for c, x in zip(clean, st):
        torch.testing.assert_close(x[:k], c[:k], atol=0, rtol=0)  # layers < k untouched
        torch.testing.assert_close(x[k], c[k] + s * v, atol=1e-5, rtol=0)  # exactly block k's output
        if k < hm.n_layers:
            assert (x[k + 1:] - c[k + 1:]).abs().max() > 1e-3  # later layers change


def test_scale_zero_is_bit_identical(hm):
    base = logits(hm, PROMPTS)
    for mode in ("add", "replace"):
        got = logits(hm, PROMPTS, Intervention(vec(hm, scale=100.0), [1, 2], "all", 0.0, mode))
        assert torch.equal(base, got)
    gen = generate_with(hm, PROMPTS, Intervention(vec(hm), 1, "all", 0.0), max_new_tokens=4, return_ids=True)
    assert gen == generate_with(hm, PROMPTS, None, max_new_tokens=4, return_ids=True)


def test_replace_sets_exactly_at_the_chosen_positions(hm):
    v = vec(hm)
    clean = hm.capture(PROMPTS, layers=[2], positions="all")
    with steer(hm, Intervention(v, 2, [1, -1], 1.0, "replace")):
        st = hm.capture(PROMPTS, layers=[2], positions="all", batch_size=1)
    for c, x in zip(clean, st):
        torch.testing.assert_close(x[0, 1], v, atol=1e-6, rtol=0)
        torch.testing.assert_close(x[0, -1], v, atol=1e-6, rtol=0)
        keep = [i for i in range(x.shape[1]) if i not in (1, x.shape[1] - 1)]
        torch.testing.assert_close(x[0, keep], c[0, keep], atol=1e-6, rtol=0)
    with steer(hm, Intervention(v, 2, "last", 0.25, "replace")):  # interpolation: h + s (v - h)
        half = hm.capture(PROMPTS, layers=[2], positions="last")
    last = torch.stack([c[0, -1] for c in clean])
    torch.testing.assert_close(half[:, 0], last + 0.25 * (v - last), atol=1e-5, rtol=0)


def test_p_row_vector_pairs_with_positions(hm):
    rows = torch.stack([vec(hm, 1), vec(hm, 2)])
    clean = hm.capture(PROMPTS[:2], layers=[1], positions="all")
    with steer(hm, Intervention(rows, 1, [0, 2], 1.0, "replace")):
        st = hm.capture(PROMPTS[:2], layers=[1], positions="all", batch_size=1)
    for c, x in zip(clean, st):
        torch.testing.assert_close(x[0, 0], rows[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(x[0, 2], rows[1], atol=1e-6, rtol=0)
        torch.testing.assert_close(x[0, 1], c[0, 1], atol=0, rtol=0)


def test_boolean_mask_equals_index_list(hm):
    p = [PROMPTS[1]]
    L = len(hm.tokenize(p)[0])
    mask = torch.zeros(L, dtype=torch.bool)
    mask[[1, 3]] = True
    a = logits(hm, p, Intervention(vec(hm), 1, mask, 3.0))
    b = logits(hm, p, Intervention(vec(hm), 1, [1, 3], 3.0))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_hooks_removed_on_exception(hm):
    before = n_hooks(hm)
    base = logits(hm, PROMPTS)
    with pytest.raises(RuntimeError, match="boom"):
        with steer(hm, Intervention(vec(hm), [0, 2], "all", 5.0)):
            assert n_hooks(hm) > before
            raise RuntimeError("boom")
    assert n_hooks(hm) == before
    with pytest.raises(IndexError, match="beyond the prompt"):  # raised inside the forward hook
        with steer(hm, Intervention(vec(hm), 1, [50], 5.0)):
            hm.forward_batch(hm.collate(hm.tokenize(PROMPTS[:1])))
    assert n_hooks(hm) == before
    assert torch.equal(base, logits(hm, PROMPTS))


@pytest.mark.parametrize("positions", ["all", "last", [1], [0, -2]])
def test_padding_invariance_of_steering(hm, positions):
    iv = Intervention(vec(hm, scale=3.0), [1, 2], positions, 1.0)
    batched = logits(hm, PROMPTS, iv, batch_size=4)
    single = torch.cat([logits(hm, [p], iv) for p in PROMPTS])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=0)
    gb = generate_with(hm, PROMPTS, iv, max_new_tokens=4, return_ids=True, batch_size=4)
    gs = [generate_with(hm, [p], iv, max_new_tokens=4, return_ids=True)[0] for p in PROMPTS]
    assert gb == gs


def test_prompt_only_versus_all_steps(hm):
    """Replace the last block's output at the last position with a vector that predicts token t.

    all_steps: every generated token is t. prompt_only: the first is t, and the rest equals plain
    greedy decoding of prompt + t (editing the last block's output at one position cannot
    reach any other position).
    """
    L = hm.n_layers
    t = 77
    v = unembedding_direction(hm, t) * 50.0  # unit-free: large along W_U[t]
    iv = Intervention(v, L, "last", 1.0, "replace")
    with torch.no_grad():
        assert int(hm.unembed(hm.final_norm(v)).argmax()) == t
    ids = hm.tokenize(PROMPTS[:2])
    every = generate_with(hm, PROMPTS[:2], iv, max_new_tokens=5, when="all_steps", return_ids=True)
    once = generate_with(hm, PROMPTS[:2], iv, max_new_tokens=5, when="prompt_only", return_ids=True)
    assert all(row == [t] * 5 for row in every)
    for x, row in zip(ids, once):
        assert row[0] == t
        assert row[1:] == generate_with(hm, [x + [t]], None, max_new_tokens=4, return_ids=True)[0]
    assert every != once


@pytest.mark.parametrize("prompts", [["Le chat"], [[1, 303, 361, 263], [1, 38, 264, 365]], PROMPTS[:2]],
                         ids=["single", "equal-lengths", "padded"])
@pytest.mark.parametrize("positions", ["last", "all"])
def test_prompt_only_edits_the_prompt_pass_alone(hm, prompts, positions):
    """``prompt_only`` must leave decoding steps alone, whether or not generate() passes a mask.

    Unpadded batches (one prompt, or prompts of equal length) get no attention mask from
    generate(), so a decoding step is told from the prompt by the KV cache alone. With the
    last block's output replaced by a vector predicting t, the first token is t under both modes;
    after it, prompt_only continues as plain greedy decoding of prompt + t would for ``last``.
    """
    ids = hm.tokenize(prompts)
    t = 77
    iv = Intervention(unembedding_direction(hm, t) * 50.0, hm.n_layers, positions, 1.0, "replace")
    every = generate_with(hm, prompts, iv, max_new_tokens=5, when="all_steps", return_ids=True)
    once = generate_with(hm, prompts, iv, max_new_tokens=5, when="prompt_only", return_ids=True)
    assert all(row == [t] * 5 for row in every)
    for x, row in zip(ids, once):
        assert row[0] == t
        if positions == "last":  # "all" also edits earlier prompt positions, so only the first token is fixed
            assert row[1:] == generate_with(hm, [x + [t]], None, max_new_tokens=4, return_ids=True)[0]
    assert every != once


def test_vector_builders(hm):
    pos, neg = ["The cat", "Le chat"], ["5+3=8", "one two"]
    v = mean_difference(hm, pos, neg, layer=2)
    st = hm.capture(pos + neg, layers=[2], positions="last")[:, 0]
    torch.testing.assert_close(v, st[:2].mean(0) - st[2:].mean(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(from_states(st[:2], st[2:]), v)
    a, b = token_id(hm, "The"), 5
    torch.testing.assert_close(unembedding_direction(hm, "The", b), hm.unembed.weight[a] - hm.unembed.weight[b])
    rows = mean_difference(hm, ["The cat sat"], ["Le chat est"], layer=1, positions=[1, 2])
    assert rows.shape == (2, hm.d_model)


def test_bad_input_errors_name_what_was_expected(hm):
    with pytest.raises(ValueError, match=rf"width 7 .*expected shape \[{hm.d_model}\]"):
        with steer(hm, Intervention(torch.ones(7), 1)):
            pass
    with pytest.raises(IndexError, match=r"valid layers are 0\.\.3"):
        with steer(hm, Intervention(vec(hm), 9)):
            pass
    with pytest.raises(IndexError, match="position 40 is beyond the prompt"):
        logits(hm, PROMPTS[:1], Intervention(vec(hm), 1, [40]))
    with pytest.raises(ValueError, match="positive input set is empty"):
        mean_difference(hm, [], ["x"], layer=1)
    with pytest.raises(ValueError, match="non-empty"):
        from_states(torch.zeros(0, hm.d_model))
    with pytest.raises(ValueError, match="expected 'add' or 'replace'"):
        Intervention(vec(hm), 1, mode="mul")
    with pytest.raises(ValueError, match="needs p explicit positions"):
        Intervention(torch.zeros(2, hm.d_model), 1, "all")
    with pytest.raises(ValueError, match="expected a single token"):
        token_id(hm, "The capital of France")
    with pytest.raises(ValueError, match="when="):
        with steer(hm, Intervention(vec(hm), 1), when="sometimes"):
            pass


@pytest.mark.integration
def test_gemma_unembedding_steer_moves_the_target_token(gemma):
    """On the real model, adding W_U[' good'] - W_U[' bad'] at a middle layer favours ' good'."""
    p = ["I think the movie was really"]
    a, b = token_id(gemma, " good"), token_id(gemma, " bad")
    v = unembedding_direction(gemma, a, b)
    base = next_token_logprobs_with(gemma, p, None, token_ids=[a, b])
    s = 0.5 * gemma.capture(p, layers=[9], positions="last").norm() / v.norm()
    got = next_token_logprobs_with(gemma, p, Intervention(v, 9, "all", float(s)), token_ids=[a, b])
    assert (got[0, 0] - got[0, 1]) > (base[0, 0] - base[0, 1])
