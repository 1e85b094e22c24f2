"""Family parity: every registered model type has a tiny model that the parity tests run on.

Text families: tests/test_model_core.py (capture == HF ``output_hidden_states``, left padding ==
one by one, lens at the last layer == model logits) runs on every tiny config in
hub.models.tiny.TINY_CONFIGS. Multimodal families: tests/test_vlm.py (capture parity, padding)
and the lens check below; Whisper: tests/test_whisper.py.
"""
from __future__ import annotations

import pytest
import torch

from hub.lens import LogitLens
from hub.models import FAMILIES
from hub.models.tiny import TINY_FAMILIES, TINY_MULTIMODAL, tiny_config, tiny_multimodal, tiny_whisper

TEXTS = ["The cat sat on the mat.", "Le chat", "5+3=8 and one two three four"]


def test_every_registered_model_type_has_a_tiny_model():
    covered = {tiny_config(f).model_type for f in TINY_FAMILIES}
    covered |= {tiny_multimodal(f).model.config.model_type for f in TINY_MULTIMODAL}
    covered.add(tiny_whisper().model.config.model_type)
    assert covered <= set(FAMILIES), f"tiny models of unregistered types: {covered - set(FAMILIES)}"
    missing = set(FAMILIES) - covered
    assert not missing, f"registered model types without a tiny model in the parity suites: {sorted(missing)}"


@pytest.mark.parametrize("family", TINY_MULTIMODAL)
def test_multimodal_lens_last_layer_reproduces_model_logits(family):
    hm = tiny_multimodal(family)
    st = hm.capture(TEXTS, layers=[hm.n_layers], positions="last")  # [n, 1, d]
    lens = LogitLens(hm)
    for i, t in enumerate(TEXTS):
        ids = torch.tensor([hm.tokenize([t])[0]])
        with torch.no_grad():
            logits = hm.model(input_ids=ids).logits[0, -1]
        torch.testing.assert_close(lens.logits(st[i, 0]), logits, atol=1e-4, rtol=1e-4)
