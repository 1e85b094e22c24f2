"""Family parity: one suite that every registered model type passes, on its tiny random model.

For each tiny model (hub/models/tiny.py: every text family in TINY_CONFIGS and every multimodal
one in TINY_MULTIMODAL, whose language model is read on text prompts here; their image/audio
paths: tests/test_vlm.py; Whisper's decoder, which needs audio: tests/test_whisper.py):
capture == HF ``output_hidden_states``, a left-padded batch == one by one, and the logit lens at
the last layer == the model's logits. A registered model type without a tiny model fails.
"""
from __future__ import annotations

import pytest
import torch

from hub.lens import LogitLens
from hub.models import FAMILIES
from hub.models.tiny import TINY_FAMILIES, TINY_MULTIMODAL, tiny_config, tiny_model, tiny_multimodal, tiny_whisper

TEXTS = ["The cat sat on the mat.", "Le chat", "5+3=8 and one two three four", "猫在垫子上。"]
MODELS = [("causal_lm", f) for f in TINY_FAMILIES] + [("multimodal", f) for f in TINY_MULTIMODAL]


@pytest.fixture(scope="module", params=MODELS, ids=[f"{k}:{f}" for k, f in MODELS])
def hm(request):
    kind, family = request.param
    return tiny_model(family) if kind == "causal_lm" else tiny_multimodal(family)


def hf_out(hm, text: str):
    """Hugging Face's own forward on one unpadded prompt (the reference)."""
    ids = torch.tensor([hm.tokenize([text])[0]])
    with torch.no_grad():
        return hm.model(input_ids=ids, output_hidden_states=True)


def test_every_registered_model_type_has_a_tiny_model():
    covered = {tiny_config(f).model_type for f in TINY_FAMILIES}
    covered |= {tiny_multimodal(f).model.config.model_type for f in TINY_MULTIMODAL}
    covered.add(tiny_whisper().model.config.model_type)
    assert covered <= set(FAMILIES), f"tiny models of unregistered types: {covered - set(FAMILIES)}"
    missing = set(FAMILIES) - covered
    assert not missing, f"registered model types without a tiny model in the parity suite: {sorted(missing)}"


def test_capture_equals_hf_hidden_states(hm):
    st = hm.capture(TEXTS, layers="all", positions="all")  # list of [layer, seq, d]
    for i, t in enumerate(TEXTS):
        hs = hf_out(hm, t).hidden_states
        assert len(hs) == hm.n_layers + 1
        for k in range(hm.n_layers):  # HF's last entry is normed; ours is the raw block output
            torch.testing.assert_close(st[i][k], hs[k][0], atol=1e-5, rtol=0)
        torch.testing.assert_close(hm.final_norm(st[i][hm.n_layers]), hs[-1][0], atol=1e-5, rtol=0)


def test_left_padded_batch_equals_one_by_one(hm):
    batched = hm.capture(TEXTS, layers="all", positions="last", batch_size=4)  # [n, layer, d]
    single = torch.cat([hm.capture([t], layers="all", positions="last", batch_size=1) for t in TEXTS])
    torch.testing.assert_close(batched, single, atol=1e-4, rtol=0)
    mean_b = hm.capture(TEXTS, layers=[1, 2], positions="mean", batch_size=3)
    mean_s = torch.cat([hm.capture([t], layers=[1, 2], positions="mean") for t in TEXTS])
    torch.testing.assert_close(mean_b, mean_s, atol=1e-4, rtol=0)


def test_lens_last_layer_reproduces_model_logits(hm):
    st = hm.capture(TEXTS, layers=[hm.n_layers], positions="last")  # [n, 1, d]
    lens = LogitLens(hm)
    for i, t in enumerate(TEXTS):
        torch.testing.assert_close(lens.logits(st[i, 0]), hf_out(hm, t).logits[0, -1], atol=1e-4, rtol=1e-4)
