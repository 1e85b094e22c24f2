"""The patchscope lens: the model decodes a state patched into an identity prompt.

Fixed points that can fail: a state taken from the identity prompt itself at layer k and
written back at k' = k leaves that forward unchanged, so the lens must give the prompt's own
next-token distribution; a prompt's final-layer state written at k' = L must give that
prompt's next-token distribution; the batched (rows = layers) path must equal the one-by-one
path through ``hub.intervene`` (``Intervention(mode="replace")``).
"""
import pytest
import torch

from hub.intervene import Intervention, next_token_logprobs_with
from hub.lens import LENSES, LogitLens, PatchscopeLens, make_lens
from hub.lens.patchscope import DEFAULT_TARGET
from hub.models.tiny import tiny_model

PROMPTS = ["The cat sat on", "Le chat est", "5+3=", "def add(a, b):"]


@pytest.fixture(scope="module", params=["llama", "gemma3"])  # gemma3: softcap, (1 + w) norm, scaled embeddings
def hm(request):
    return tiny_model(request.param)


def _logprobs(hm, prompts):
    return next_token_logprobs_with(hm, prompts)  # [n, vocab], plain forward


def test_registered_by_name(hm):
    assert LENSES["patchscope"] is PatchscopeLens
    assert isinstance(make_lens("patchscope", hm), PatchscopeLens)


def test_own_state_at_same_layer_gives_the_prompts_own_distribution(hm):
    layers = hm.check_layers("all")
    for target in (DEFAULT_TARGET, "x -> x; ?"):
        own = hm.capture([target], layers=layers, positions="last")  # [1, L+1, d]
        lens = PatchscopeLens(hm, target_prompt=target, vocab_chunk_bytes=1)
        lp = torch.log_softmax(lens.logits(own, layers), -1)[0]  # [L+1, vocab]
        ref = _logprobs(hm, [target])[0]
        for j in range(len(layers)):
            torch.testing.assert_close(lp[j], ref, atol=1e-5, rtol=0)


def test_final_state_written_at_the_last_layer_gives_that_prompts_distribution(hm):
    L = hm.n_layers
    final = hm.capture(PROMPTS, layers=[L], positions="last")  # [n, 1, d]
    ref = _logprobs(hm, PROMPTS)
    for lens in (PatchscopeLens(hm), PatchscopeLens(hm, target_layer=L)):
        lp = torch.log_softmax(lens.logits(final, [L]), -1)[:, 0]
        torch.testing.assert_close(lp, ref, atol=1e-5, rtol=0)
        # and the logit lens agrees there (every lens reproduces the model at the last layer)
        torch.testing.assert_close(torch.log_softmax(LogitLens(hm).logits(final[:, 0]), -1), ref,
                                   atol=1e-5, rtol=0)


@pytest.mark.parametrize("target_layer", ["same", 1])
def test_batched_equals_one_by_one_through_the_intervention_hooks(hm, target_layer):
    layers = hm.check_layers("all")
    states = hm.capture(PROMPTS, layers=layers, positions="last")  # [n, L+1, d]
    lens = PatchscopeLens(hm, target_layer=target_layer, rows_per_forward=5)  # chunks cut across items
    lp = torch.log_softmax(lens.logits(states, layers), -1)  # [n, L+1, vocab]
    for i in range(len(PROMPTS)):
        for j, k in enumerate(layers):
            kp = k if target_layer == "same" else target_layer
            iv = Intervention(states[i, j], layers=kp, positions="last", scale=1.0, mode="replace")
            ref = next_token_logprobs_with(hm, [DEFAULT_TARGET], iv)[0]
            torch.testing.assert_close(lp[i, j], ref, atol=1e-5, rtol=0)
    # the streamed readout reads the same distribution
    sets = [[[3, 4, 5], [10]]] * len(PROMPTS)
    red = lens.reduce(states, token_sets=sets, top_k=2, layers=layers)
    p = lp.exp()
    torch.testing.assert_close(red["set_prob"][..., 0], p[..., [3, 4, 5]].sum(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(red["top_ids"][..., 0], p.argmax(-1))


def test_a_patched_state_changes_the_reading(hm):
    layers = [1]
    states = hm.capture(PROMPTS[:2], layers=layers, positions="last")
    lp = PatchscopeLens(hm).logits(states, layers)
    assert not torch.allclose(lp[0], lp[1], atol=1e-3)  # different states, different readings


def test_bad_options_are_refused(hm):
    with pytest.raises(ValueError, match="apply_norm=false"):
        PatchscopeLens(hm, apply_norm=False)
    with pytest.raises(ValueError, match="target_layer='early'"):
        PatchscopeLens(hm, target_layer="early")
    with pytest.raises(Exception, match="layer"):
        PatchscopeLens(hm, target_layer=hm.n_layers + 5)
    with pytest.raises(ValueError, match="depends on the layer"):
        PatchscopeLens(hm).reduce(torch.zeros(1, 2, hm.d_model))
