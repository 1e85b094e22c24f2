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
