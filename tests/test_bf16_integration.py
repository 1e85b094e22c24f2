"""Integration: a real model run in bfloat16 reads the same latent-language curves as in fp32.

16 fr->zh translation prompts (the text adapter's lens task) through the logit-lens readout:
every per-layer ``lang_prob`` curve (target zh, dominant en) in bf16 lies within 0.02 (absolute)
of fp32, and each curve peaks at the same layer.
"""
from __future__ import annotations

import numpy as np
import pytest

from hub.lens.readout import lens_readout
from hub.models import load_model
from modalities.text import TextAdapter

pytestmark = pytest.mark.integration
ATOL = 0.02


def curves(hm, lt) -> dict[str, np.ndarray]:
    df, _ = lens_readout(hm, lt.prompts, lt.token_sets, lt.set_names, energy=False)
    lp = df[df.metric == "lang_prob"]
    return {lang: g.sort_values("layer")["value"].to_numpy() for lang, g in lp.groupby("lang")}


def check_bf16_curves(fp32_model, store_name: str) -> dict:
    lt = TextAdapter(max_items=16, seed=0).lens_task("translation", "fr", "zh", fp32_model.tokenizer)
    low = load_model(store_name, dtype="bfloat16")
    ref, got = curves(fp32_model, lt), curves(low, lt)
    assert set(ref) == set(got) == set(lt.set_names)
    for lang in ref:
        diff = np.abs(ref[lang] - got[lang]).max()
        assert diff <= ATOL, (store_name, lang, diff)
        assert int(ref[lang].argmax()) == int(got[lang].argmax()), (store_name, lang, ref[lang], got[lang])
    out = {lang: round(float(np.abs(ref[lang] - got[lang]).max()), 4) for lang in ref}
    print(f"{store_name}: bf16 vs fp32 max |d lang_prob| {out}, peaks {[int(ref[k].argmax()) for k in ref]}")
    return out


def test_gemma_bf16_lang_prob_curves_match_fp32(gemma):
    check_bf16_curves(gemma, "gemma3_270m")


def test_qwen05_bf16_lang_prob_curves_match_fp32(qwen05):
    check_bf16_curves(qwen05, "qwen25_coder_05b")
