"""A model run in bfloat16: capture and the lens agree with the same weights in float32 within
bfloat16's precision, and hand back float32 (the dtype the analyses expect)."""
from __future__ import annotations

import pytest
import torch

from hub.lens import LogitLens
from hub.models import HubModel
from hub.models.tiny import tiny_model

TEXTS = ["The cat sat on the mat.", "Le chat", "5+3=8 and one two three four", "猫在垫子上。"]
EPS = torch.finfo(torch.bfloat16).eps  # 2**-7: relative rounding of one bf16 value
# relative error allowed per state: every block adds a few roundings of its input's size
# (weights, matmul outputs, norms) that mostly average out: measured at most 1.4 eps here
REL_TOL = 4 * EPS


def pair(family: str) -> tuple[HubModel, HubModel]:
    """The same random tiny model in float32 and in bfloat16."""
    ref = tiny_model(family, seed=0)
    low = tiny_model(family, seed=0)
    low.model.to(torch.bfloat16)
    assert next(low.model.parameters()).dtype == torch.bfloat16
    return ref, low


def rel_err(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-state relative error ``||a - b|| / ||b||`` over the last axis."""
    return (a.double() - b.double()).norm(dim=-1) / b.double().norm(dim=-1)


@pytest.mark.parametrize("family", ["llama", "gemma3", "gpt2"])
def test_bf16_capture_matches_fp32_and_returns_fp32(family):
    ref, low = pair(family)
    a = ref.capture(TEXTS, layers="all", positions="last", batch_size=2)  # [n, layer, d]
    b = low.capture(TEXTS, layers="all", positions="last", batch_size=2)
    assert b.dtype == torch.float32 and b.shape == a.shape and torch.isfinite(b).all()
    err = rel_err(b, a)
    assert err.max() < REL_TOL, err.max()
    # and it really ran in bf16: the states differ from fp32 (by at least bf16 rounding)
    assert err[:, 1:].mean() > EPS / 100
    full = low.capture(TEXTS, layers=[1, low.n_layers], positions="all")
    assert all(x.dtype == torch.float32 for x in full)
    bf = low.capture(TEXTS[:2], layers=[1], dtype=torch.bfloat16)  # asked for bf16: gets bf16
    assert bf.dtype == torch.bfloat16


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_bf16_lens_matches_fp32(family):
    ref, low = pair(family)
    st = ref.capture(TEXTS, layers="all", positions="last")
    p_ref = torch.softmax(LogitLens(ref).logits(st), -1)
    lens = LogitLens(low)
    z = lens.logits(st)
    assert z.dtype == torch.float32
    p = torch.softmax(z, -1)
    # total variation distance between the lens distributions (measured 2e-4): small next to 1
    tv = 0.5 * (p - p_ref).abs().sum(-1)
    assert tv.max() < 0.01, tv.max()
    red = lens.reduce(st, token_sets=[[[5, 6], [7]]] * len(TEXTS))
    assert red["set_prob"].dtype == torch.float32
    torch.testing.assert_close(red["set_prob"][..., 0], p[..., [5, 6]].sum(-1), atol=1e-6, rtol=1e-4)


def test_states_dtype_option_and_config_dtype_for_tiny_models():
    """``model.dtype=bfloat16`` runs the forward in bf16; capture hands back fp32 unless
    ``model.states_dtype=model``; a bad states_dtype is one clear error."""
    from hub.errors import UserError
    from hub.models import load_model

    ref = tiny_model("llama", seed=0)
    low = load_model("tiny:llama", dtype="bfloat16")
    assert low.dtype == torch.bfloat16 and next(low.model.parameters()).dtype == torch.bfloat16
    a = ref.capture(TEXTS, layers="all")
    b = low.capture(TEXTS, layers="all")
    assert b.dtype == torch.float32 and rel_err(b, a).max() < REL_TOL
    keep = load_model("tiny:llama", dtype="bfloat16", states_dtype="model")
    k = keep.capture(TEXTS, layers="all")
    assert k.dtype == torch.bfloat16 and torch.equal(k.float(), b)  # same forward, cast only at the end
    assert keep.capture(TEXTS, layers=[2], dtype=torch.float32).dtype == torch.float32  # explicit wins
    with pytest.raises(UserError, match="model.states_dtype='half'"):
        load_model("tiny:llama", dtype="bfloat16", states_dtype="half")


def test_bf16_lens_computes_in_fp32():
    """The lens upcasts after the final norm: its logits equal an fp32 matmul of the normed state
    with the bf16 weights upcast, not a bf16 matmul (which rounds each logit to 8 bits)."""
    _, low = pair("llama")
    st = low.capture(TEXTS, layers="all")  # [n, layer, d] fp32
    h = low.final_norm(st.to(torch.bfloat16)).float()
    want = h @ low.unembed.weight.float().T
    z = LogitLens(low).logits(st)
    torch.testing.assert_close(z, want, atol=1e-5, rtol=1e-5)
    bf16_matmul = (h.to(torch.bfloat16) @ low.unembed.weight.T).float()
    assert (bf16_matmul - want).abs().max() > 1e-4  # the check can tell the two apart


def test_model_config_keys_reach_the_loader():
    """``model.dtype`` / ``model.states_dtype`` in a run config reach the loaded model (hub.context)."""
    from omegaconf import OmegaConf

    from hub.context import get_model

    cfg = OmegaConf.create({"name": "t", "path": "tiny:llama", "dtype": "bfloat16", "states_dtype": "model",
                            "device_map": None})
    hm = get_model(cfg)
    assert hm.dtype == torch.bfloat16 and hm.capture(TEXTS[:1], layers=[1]).dtype == torch.bfloat16
    cfg32 = OmegaConf.merge(cfg, {"states_dtype": "float32"})
    assert get_model(cfg32).capture(TEXTS[:1], layers=[1]).dtype == torch.float32  # a separate cache entry
