"""Whisper in the hub: tiny random Whisper for the mechanics, whisper-base for integration."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from hub.models import load_model
from hub.models.tiny import tiny_whisper
from hub.models.whisper import WhisperHub

sys.path.insert(0, str(Path(__file__).parent))
from helpers import run_cfg  # noqa: E402


def clips(seconds=(1.0, 0.5)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(int(s * 16000))).astype(np.float32) for s in seconds]


@pytest.fixture(scope="module")
def wh() -> WhisperHub:
    return tiny_whisper()


def test_decoder_is_a_hub_model(wh):
    assert wh.family.name == "whisper" and wh.n_layers == 2 and wh.n_encoder_layers == 2
    assert wh.final_norm is wh.model.model.decoder.layer_norm and wh.unembed is wh.model.proj_out
    assert wh.prefix("fr") == [wh.token_id(t) for t in ("<|startoftranscript|>", "<|fr|>", "<|transcribe|>",
                                                          "<|notimestamps|>")]
    with pytest.raises(KeyError, match=r"no token '<\|xx\|>'"):
        wh.prefix("xx")


def test_encoder_layers_are_speech_frame_means(wh):
    waves = clips()
    hidden, means = wh.encode(waves, layers="all")
    assert hidden.shape == (2, 1500, 32) and means.shape == (2, 3, 32)
    ref = wh.encoder(wh.features(waves), output_hidden_states=True).hidden_states
    for i, w in enumerate(waves):
        f = wh.speech_frames(len(w) / 16000)
        assert f == {0: 50, 1: 25}[i]
        for k in range(2):  # HF's last entry is after the encoder's final layer norm
            torch.testing.assert_close(means[i, k], ref[k][i, :f].mean(0), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(hidden, ref[-1], atol=1e-5, rtol=1e-4)
    memo_hidden, memo_means = wh.encode_memo(waves)
    torch.testing.assert_close(memo_means, means)


def test_decoder_capture_left_padding_and_audio_paths(wh):
    waves = clips()
    hidden, _ = wh.encode(waves)
    feats = wh.features(waves)
    seqs = [wh.prefix("de"), wh.prefix("de") + wh.text_ids("Der Hund schläft.")]
    extra = [{"encoder_hidden_states": hidden[i:i + 1]} for i in range(2)]
    both = wh.capture(seqs, layers="all", positions="last", extra=extra)
    alone = torch.stack([wh.capture([s], layers="all", positions="last", extra=[e])[0] for s, e in zip(seqs, extra)])
    torch.testing.assert_close(both, alone, atol=1e-5, rtol=1e-4)
    via_features = wh.capture(seqs, layers="all", positions="last",
                              extra=[{"input_features": feats[i:i + 1]} for i in range(2)])
    torch.testing.assert_close(both, via_features, atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # parity with HF's decoder hidden states (last entry is normed)
        ref = wh.model(encoder_outputs=(hidden[1:],), decoder_input_ids=torch.tensor([seqs[1]]),
                       output_hidden_states=True).decoder_hidden_states
    torch.testing.assert_close(both[1, 1], ref[1][0, -1], atol=1e-5, rtol=1e-4)


def test_greedy_decoding_cache_matches_a_full_forward_without_deprecation_warnings(wh):
    """The KV-cached greedy loop gives the logits of one uncached forward over its own output,
    and passes the cache by the current keyword (warnings are errors: transformers 5.24 warns
    for ``past_key_values=``, which 5.40 removes)."""
    hidden, _ = wh.encode(clips((1.0, 0.5, 0.8)))
    prefix = torch.tensor([wh.prefix("fr")] * 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ids, steps = wh.greedy(hidden, prefix, max_new_tokens=6)
        texts = wh.transcribe(clips((1.0,)), "en", max_new_tokens=4)
    assert steps.shape[:2] == (3, ids.shape[1] - prefix.shape[1]) and len(texts) == 1
    with torch.no_grad():
        full = wh.model(encoder_outputs=(hidden,), decoder_input_ids=ids[:, :-1], use_cache=False).logits
    torch.testing.assert_close(steps, full[:, prefix.shape[1] - 1:], atol=1e-4, rtol=1e-4)
    assert torch.equal(ids[:, prefix.shape[1]:], full[:, prefix.shape[1] - 1:].argmax(-1))


def test_too_long_clip_is_refused(wh):
    with pytest.raises(ValueError, match="longer than Whisper's 30 s window"):
        wh.features([np.zeros(31 * 16000, np.float32)])


def test_lens_read_positions_sit_before_the_word(wh):
    from experiments.whisper_lens import slots_for

    drops: dict = {}
    seqs, slots = slots_for(wh, ["Der Hund schläft vor der Tür.", "Hund"], "de", drops)
    words = [(s.clip, s.word, s.en) for s in slots]
    assert (0, "Hund", "dog") in words and (1, "Hund", "dog") in words
    s0 = next(s for s in slots if s.clip == 0 and s.word == "Hund")
    prefix = wh.prefix("de")
    assert seqs[0][: s0.pos + 1] == prefix + wh.text_ids("Der")
    s1 = next(s for s in slots if s.clip == 1)
    assert s1.pos == len(prefix) - 1  # first word: read at <|notimestamps|>
    assert not s0.target & s0.english


def test_missing_feature_extractor_is_a_clear_error(wh, tmp_path):
    wh.model.save_pretrained(tmp_path)
    wh.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=str(tmp_path) + r": no Whisper feature extractor"):
        load_model(str(tmp_path), kind="whisper")


@pytest.mark.slow
def test_whisper_experiments_smoke(tmp_path):
    """All three experiments on the tiny model, 4 sentences in 2 languages: tidy results."""
    report = run_cfg(["experiment=whisper", "model=tiny_whisper", "modality.max_items=4",
                      "modality.languages=[en,de]", "metric.n_boot=5", "experiment.conditions=[speech]"], tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    assert set(df["modality"]) == {"audio"}
    assert {"whisper_encoder", "whisper_lens", "audio vs text", "audio+text vs text",
            "audio vs English text"} <= set(df["task"])
    lens = df[(df["task"] == "whisper_lens") & (df["metric"] == "lang_prob")]
    assert set(lens["lang"]) == {"de", "en"} and lens["value"].between(0, 1).all()
    enc = df[df["task"] == "whisper_encoder"]
    assert set(enc["layer"]) == {0, 1, 2} and set(enc["pair"]) == {"de-en"}
    text = report.read_text()
    assert "Whisper encoder" in text and "logit lens" in text and "audio vs text" in text


# --------------------------------------------------------------- integration
@pytest.fixture(scope="module")
def whisper_base() -> WhisperHub:
    from hub.store import default_store

    if not default_store().is_installed("whisper_base"):
        pytest.skip("whisper_base not installed: run `semantic-hub-models fetch whisper_base`")
    return load_model("whisper_base", kind="whisper")


@pytest.mark.integration
def test_whisper_base_transcribes_the_builtin_speech(whisper_base):
    from modalities.audio import load_speech

    s = load_speech(langs=["en"])
    (text,) = whisper_base.transcribe([s.clips[0].wave], "en", max_new_tokens=16)
    assert text.lower().rstrip(".") == s.table.at[0, "text"].lower().rstrip(".")


@pytest.mark.integration
def test_whisper_base_lens_and_encoder(whisper_base):
    """Three German sentences: the spoken word wins the decoder's last layer, English does not."""
    from experiments.whisper_lens import slots_for
    from hub.lens import LogitLens
    from modalities.audio import load_speech

    s = load_speech(langs=["de"])
    texts = s.table["text"].tolist()[:3]
    drops: dict = {}
    seqs, slots = slots_for(whisper_base, texts, "de", drops)
    hidden, means = whisper_base.encode_memo([c.wave for c in s.clips[:3]])
    assert means.shape == (3, 7, 512) and hidden.shape == (3, 1500, 512)
    states = whisper_base.capture(seqs, layers="all", positions="all",
                                  extra=[{"encoder_hidden_states": hidden[i:i + 1]} for i in range(3)])
    x = torch.stack([states[t.clip][:, t.pos] for t in slots])
    p = LogitLens(whisper_base).reduce(x, [[list(t.target), list(t.english)] for t in slots])["set_prob"]
    assert len(slots) >= 3  # Hund, Tür, Tasse, Regenschirm (Mutter, Morgen, Tee: cognate token sets, dropped)
    assert p[:, -1, 0].mean() > 0.1 and p[:, -1, 0].mean() > 10 * p[:, -1, 1].mean()
