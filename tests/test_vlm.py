"""Vision- and audio-language models on tiny random configs, through the real path.

Processor -> expanded placeholder tokens -> span -> HubModel capture with hooks on the inner
language model. Checked: span sizes, parity with Hugging Face's own hidden states (which
also checks Gemma 3's token_type_ids and Qwen2-VL's 3-D rope positions), independence of
batch composition under left padding, missing processors, and open_clip towers.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hub.pairs import compare_paired
from hub.models import load_model
from hub.models.tiny import tiny_multimodal
from hub.models.vlm import ProcessorError, encode_image

# image tokens per image; None: set by the processor from the image size (dynamic resolution, "anyres")
IMAGE_FAMILIES = {"llava": 16, "llava_next": None, "llava_onevision": None, "gemma3": 4, "qwen2_vl": None,
                  "qwen2_5_vl": None, "idefics3": 4, "smolvlm": 4}
METRIC = {"names": ["cos_adjusted", "cka_debiased", "retrieval_top1"], "k": 3, "csls": False, "csls_k": 3,
          "n_boot": 10, "ci": 0.95, "clamp": None}


def images(n: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module", params=list(IMAGE_FAMILIES))
def vlm(request):
    return request.param, tiny_multimodal(request.param)


def hf_hidden(hm, enc) -> list[torch.Tensor]:
    """Hugging Face's hidden states for one processed item (the reference for parity)."""
    proc = hm.processor
    ids = torch.tensor([enc.ids])
    kw = dict(input_ids=ids, attention_mask=torch.ones_like(ids), **enc.extra)
    if hm.family.name == "gemma3_vlm":
        kw["token_type_ids"] = (ids == hm.image_token_id).long()
    if hm.family.name == "qwen2_vl":
        kw["mm_token_type_ids"] = (ids == hm.image_token_id).int()
    assert proc is not None
    with torch.no_grad():
        return hm.model(**kw, output_hidden_states=True).hidden_states


def test_image_span_and_parity_with_hf(vlm):
    family, hm = vlm
    enc = hm.encode_image(images(1)[0])
    start, end = enc.span
    expected = IMAGE_FAMILIES[family]
    if hm.family.name == "qwen2_vl":  # dynamic resolution: patches of the resized image, merged 2x2
        expected = int(enc.extra["image_grid_thw"].prod()) // 4
    if expected is None:  # anyres: a 4x4 base view plus the crops' patches and row-end newlines
        assert end - start > 16 and end - start == len(enc.positions)
    else:
        assert end - start == expected == len(enc.positions)
    assert all(enc.ids[i] == hm.image_token_id for i in range(start, end))
    states = hm.capture([enc.ids], layers="all", positions="all", extra=[enc.extra])[0]  # [layer, seq, d]
    ref = hf_hidden(hm, enc)
    assert states.shape == (hm.n_layers + 1, len(enc.ids), hm.d_model)
    for k in range(hm.n_layers):  # HF's last entry is after the final norm; ours is the raw block output
        torch.testing.assert_close(states[k], ref[k][0].float(), atol=1e-5, rtol=1e-4)


def test_left_padding_and_batch_composition(vlm):
    family, hm = vlm
    ims = images(3)
    prompts = ["{image}", "some words before the picture {image}", "x {image} and after"]
    if hm.family.name == "qwen2_vl":
        prompts = ["<|vision_start|>{image}<|vision_end|>", "some words <|vision_start|>{image}<|vision_end|>",
                   "x <|vision_start|>{image}<|vision_end|> after"]
    if family == "llava":
        prompts = ["USER: {image}", "USER: some words before {image}", "x {image} after"]
    enc = [hm.encode_image(im, p) for im, p in zip(ims, prompts)]
    assert len({len(e.ids) for e in enc}) == 3
    kw = dict(layers="all", positions="mean", spans=[e.span for e in enc], extra=[e.extra for e in enc])
    together = hm.capture([e.ids for e in enc], batch_size=3, **kw)
    alone = torch.stack([hm.capture([e.ids], layers="all", positions="mean", spans=[e.span], extra=[e.extra])[0]
                         for e in enc])
    assert together.shape == (3, hm.n_layers + 1, hm.d_model)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_image_adapter_pairs_through_the_model(vlm):
    from modalities.image import ImageAdapter

    _, hm = vlm
    adapter = ImageAdapter(languages=["en", "fr"], kinds=["shapes"], max_items=6)
    sets = list(adapter.pairs(hm))
    assert [s.ids["lang"] for s in sets] == ["en", "fr"] and sets[0].a is sets[1].a  # images encoded once
    side = sets[0].a
    assert side.positions == "mean" and len(side.spans) == 6 and side.modality == "image"
    df = compare_paired(hm, sets[1], METRIC, layers=[0, hm.n_layers], batch_size=4)
    assert set(df["layer"]) == {0, hm.n_layers} and df["value"].notna().all()


def test_gemma3_image_tokens_attend_bidirectionally():
    hm = tiny_multimodal("gemma3")
    enc = hm.encode_image(images(1)[0])
    first = enc.positions[0]
    with_tt = hm.capture([enc.ids], layers=[1], positions=[first], extra=[enc.extra])
    ids = torch.tensor([enc.ids])
    got = {}
    with hm.hooks({1: lambda h: got.setdefault(1, h[0, first].clone())}, stop_after=1), torch.no_grad():
        hm.model(input_ids=ids, attention_mask=torch.ones_like(ids), **enc.extra)  # no token_type_ids: causal
    assert not torch.allclose(with_tt[0, 0, 0], got[1], atol=1e-6)


def test_audio_lm_span_parity_and_adapter():
    from modalities.audio import AudioAdapter

    hm = tiny_multimodal("qwen2_audio")
    wave = (0.1 * np.sin(np.arange(16000) / 5)).astype(np.float32)
    enc = hm.encode_audio(wave)
    assert enc.span[1] - enc.span[0] == len(enc.positions) == 25  # 1 s -> 100 mel frames / 4
    states = hm.capture([enc.ids], layers="all", positions="all", extra=[enc.extra])[0]
    with torch.no_grad():
        ids = torch.tensor([enc.ids])
        ref = hm.model(input_ids=ids, attention_mask=torch.ones_like(ids), **enc.extra,
                       output_hidden_states=True).hidden_states
    torch.testing.assert_close(states[1], ref[1][0], atol=1e-5, rtol=1e-4)
    adapter = AudioAdapter(languages=["de"], max_items=4, text_lang="en")
    (pset,) = adapter.pairs(hm)
    assert pset.a.modality == "audio" and pset.b.inputs[0] == "The dog is sleeping in front of the door."
    df = compare_paired(hm, pset, METRIC, layers=[1, 3], batch_size=2)
    assert df["value"].notna().all() and set(df["modality"]) == {"audio"}


def test_missing_processor_is_a_clear_error(tmp_path):
    hm = tiny_multimodal("llava")
    hm.model.save_pretrained(tmp_path)
    hm.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ProcessorError, match=str(tmp_path) + r".*processor"):
        load_model(str(tmp_path), kind="vlm")
    with pytest.raises(ProcessorError, match="has no image processor"):
        encode_image(hm.tokenizer, images(1)[0])


def test_prompt_without_placeholder():
    hm = tiny_multimodal("llava")
    with pytest.raises(ValueError, match=r"must contain \{image\}"):
        hm.encode_image(images(1)[0], "no placeholder here")


# ------------------------------------------------------------------ open_clip
def test_tiny_open_clip_towers_match_the_embeddings():
    import torch.nn.functional as F

    from hub.models.tiny import tiny_clip
    from modalities.synthetic_images import synthetic_items

    cm = tiny_clip()
    items = synthetic_items(["shapes"])[:5]
    s, e = cm.image_states([it.image for it in items])
    t, f = cm.text_states([it.captions["en"] for it in items])
    assert s.shape == (5, len(cm.image_blocks) + 1, 32) and t.shape == (5, len(cm.text_blocks) + 1, 32)
    assert e.shape == f.shape == (5, 16)
    v = cm.model.visual
    torch.testing.assert_close(F.normalize(v.ln_post(s[:, -1]) @ v.proj, dim=-1), e, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(F.normalize(cm.model.ln_final(t[:, -1]) @ cm.model.text_projection, dim=-1), f,
                               atol=1e-5, rtol=1e-4)


def test_building_the_tiny_clip_leaves_process_logging_as_it_was():
    import logging

    from hub.models.tiny import tiny_clip

    root = logging.getLogger()
    before = root.level
    tiny_clip.cache_clear()
    tiny_clip()
    assert root.level == before  # silencing open_clip's warning must not silence everyone else


# ------------------------------------------------------- experiments, smoke runs
@pytest.mark.slow
@pytest.mark.parametrize("overrides,tasks", [
    (["experiment=image_similarity", "model=tiny_qwen2_vl", "modality.languages=[en,de]"], {"image-caption"}),
    (["experiment=image_lens", "model=tiny_gemma3_vlm", "experiment.lens_langs=[en]", "modality.kinds=[colour,word]"],
     {"image_lens"}),
    (["experiment=clip_similarity", "modality.languages=[en,fr]"], {"towers", "joint embedding"}),
    (["experiment=audio_similarity", "modality.languages=[de]"], {"audio-text"}),
])
def test_experiment_smoke(tmp_path, overrides, tasks):
    import pandas as pd
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from helpers import run_cfg

    report = run_cfg(overrides + ["modality.max_items=8", "metric.n_boot=5"], tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    assert set(df["task"]) == tasks and df["value"].notna().all()
    assert set(df["modality"]) == ({"audio"} if "audio" in overrides[0] else {"image"})
    assert report.is_file() and list(tmp_path.glob("*.png"))
