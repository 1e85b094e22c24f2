"""The Lens interface: a new lens is one class, and everything after ``transform`` is shared.

An affine per-layer lens (the shape of a tuned lens) is defined here, outside the package, as
the README shows: at identity it must equal the logit lens in every readout; with a shift it
must equal the logit lens applied to the shifted states; layer-dependent lenses refuse calls
that do not say which layers the states are from.
"""
import pytest
import torch

from hub.lens import LENSES, Lens, LogitLens, make_lens, register_lens
from hub.lens.readout import lens_readout
from hub.models.tiny import tiny_model


@register_lens("test_affine")
class AffineLens(Lens):
    needs_layers = True

    def __init__(self, hm, A, b, **kw):  # A [L+1, d, d], b [L+1, d]
        super().__init__(hm, **kw)
        self.A, self.b = A, b

    def transform(self, states, layers):  # states [..., layer, d]
        k = torch.tensor(layers)
        return states + torch.einsum("...li,lij->...lj", states, self.A[k]) + self.b[k]


def _setup(vocab_chunk_bytes=1):
    hm = tiny_model("gemma3")  # softcapped logits, Gemma's (1 + w) norm
    states = hm.capture(["The cat sat on", "Le chat est", "5+3=", "def add(a, b):"], layers="all",
                        positions="last")  # [4, L+1, d]
    L1, d = states.shape[1], states.shape[2]
    return hm, states, list(range(L1)), torch.zeros(L1, d, d), torch.zeros(L1, d)


def test_registry_names_the_logit_lens_and_a_new_lens():
    assert LENSES["logit"] is LogitLens and LENSES["test_affine"] is AffineLens and AffineLens.name == "test_affine"
    with pytest.raises(KeyError, match="unknown lens 'no_such_lens'"):
        make_lens("no_such_lens", tiny_model("llama"))
    with pytest.raises(ValueError, match="already registered"):
        register_lens("logit")(AffineLens)


def test_identity_affine_lens_equals_the_logit_lens_in_every_readout():
    hm, states, layers, A, b = _setup()
    ref = LogitLens(hm, vocab_chunk_bytes=1)  # several vocabulary blocks
    lens = make_lens("test_affine", hm, A=A, b=b, vocab_chunk_bytes=1)
    sets = [[[5, 6, 7], [100, 200]]] * states.shape[0]
    r0 = ref.reduce(states, token_sets=sets, top_k=3)
    r1 = lens.reduce(states, token_sets=sets, top_k=3, layers=layers)
    for key in ("entropy", "set_prob", "top_ids", "top_probs"):
        torch.testing.assert_close(r1[key], r0[key])
    torch.testing.assert_close(lens.logits(states, layers), ref.logits(states))
    tgt = torch.randint(0, hm.vocab_size, states.shape[:2])
    torch.testing.assert_close(lens.target_logprob(states, tgt, layers), ref.target_logprob(states, tgt))
    torch.testing.assert_close(lens.token_energy(states, layers), ref.token_energy(states))


def test_a_shifted_lens_reads_the_shifted_states():
    hm, states, layers, A, b = _setup()
    b = torch.randn(b.shape, generator=torch.Generator().manual_seed(0))
    lens = AffineLens(hm, A, b)
    torch.testing.assert_close(lens.logits(states, layers), LogitLens(hm).logits(states + b))
    assert not torch.allclose(lens.logits(states, layers), LogitLens(hm).logits(states))


def test_lens_readout_takes_any_lens():
    hm, _, layers, A, b = _setup()
    prompts, sets = ["The cat sat on", "Le chat est"], [[frozenset({5, 6}), frozenset({9})]] * 2
    a, _ = lens_readout(hm, prompts, sets, ["x", "y"])
    c, _ = lens_readout(hm, prompts, sets, ["x", "y"], lens=AffineLens(hm, A, b))
    torch.testing.assert_close(torch.tensor(c["value"].to_numpy()), torch.tensor(a["value"].to_numpy()))


def test_a_layer_dependent_lens_needs_the_layers():
    hm, states, layers, A, b = _setup()
    lens = AffineLens(hm, A, b)
    with pytest.raises(ValueError, match="depends on the layer: pass layers="):
        lens.reduce(states)
    with pytest.raises(ValueError, match="labels for states of shape"):
        lens.reduce(states, layers=layers[:-1])
    LogitLens(hm).reduce(states)  # the logit lens reads any layer without labels
