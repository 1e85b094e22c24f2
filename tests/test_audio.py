"""Audio loading: every bad input is a clear error naming the file, or a counted repair."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from modalities.audio import (SPEECH_DIR, AudioInputError, find_words, lexicon, load_audio, load_speech,
                              read_transcripts)

SR = 16_000


def tone(seconds: float = 0.5, sr: int = SR, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, 1) if channels > 1 else x


def write(path, data, sr: int = SR, subtype: str = "PCM_16"):
    sf.write(path, data, sr, subtype=subtype)
    return path


def test_clean_file_loads_as_16k_mono(tmp_path):
    clip = load_audio(write(tmp_path / "a.wav", tone()))
    assert clip.sr == SR and clip.wave.ndim == 1 and clip.wave.dtype == np.float32
    assert clip.repairs == () and abs(clip.seconds - 0.5) < 1e-3


def test_wrong_sample_rate_is_resampled(tmp_path):
    clip = load_audio(write(tmp_path / "a.wav", tone(sr=44_100), sr=44_100))
    assert clip.sr == SR and abs(len(clip.wave) - SR // 2) <= 2
    assert clip.repairs == ("resampled 44100->16000 Hz",)
    spec = np.abs(np.fft.rfft(clip.wave))
    assert abs(np.argmax(spec) * SR / len(clip.wave) - 440) < 5  # the tone survives resampling


def test_stereo_is_mixed_down(tmp_path):
    data = np.stack([tone()[:, None], np.zeros((SR // 2, 1), np.float32)], 1)[:, :, 0]
    clip = load_audio(write(tmp_path / "s.wav", data))
    assert "mixed to mono" in clip.repairs
    np.testing.assert_allclose(clip.wave, tone() / 2, atol=1e-3)


def test_silence_is_refused(tmp_path):
    with pytest.raises(AudioInputError, match=r"s\.wav: silent audio") as e:
        load_audio(write(tmp_path / "s.wav", np.zeros(SR, np.float32)))
    assert e.value.reason == "silent"


def test_nan_samples_error_or_counted_repair(tmp_path):
    x = tone()
    x[100:110] = np.nan
    path = write(tmp_path / "n.wav", x, subtype="FLOAT")
    with pytest.raises(AudioInputError, match=r"n\.wav: 10 NaN/inf samples"):
        load_audio(path)
    clip = load_audio(path, nonfinite="zero")
    assert np.isfinite(clip.wave).all() and "non-finite samples set to 0" in clip.repairs


def test_longer_than_window_is_truncated_with_warning(tmp_path):
    path = write(tmp_path / "long.wav", tone(3.0))
    with pytest.warns(UserWarning, match=r"long\.wav: 3\.0 s is longer than the model window of 2 s"):
        clip = load_audio(path, max_seconds=2.0)
    assert len(clip.wave) == 2 * SR and "truncated to the model window" in clip.repairs


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.wav"
    path.write_bytes(b"this is not audio at all" * 20)
    with pytest.raises(AudioInputError, match=r"bad\.wav: not a readable audio file"):
        load_audio(path)


def test_truncated_wav(tmp_path):
    path = write(tmp_path / "t.wav", tone(1.0))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(AudioInputError, match=r"t\.wav: truncated WAV file: the data chunk declares"):
        load_audio(path)
    path.write_bytes(raw[:30])
    with pytest.raises(AudioInputError, match=r"t\.wav: truncated"):
        load_audio(path)


def test_unsupported_format_and_missing_file(tmp_path):
    path = tmp_path / "a.xyz"
    path.write_bytes(b"\0" * 100)
    with pytest.raises(AudioInputError, match=r"a\.xyz: unsupported audio format '\.xyz'"):
        load_audio(path)
    with pytest.raises(AudioInputError, match=r"nope\.wav: no such audio file"):
        load_audio(tmp_path / "nope.wav")


def test_empty_file(tmp_path):
    with pytest.raises(AudioInputError, match=r"e\.wav: empty audio file"):
        load_audio(write(tmp_path / "e.wav", np.zeros(0, np.float32)))


def test_speech_folder_drops_and_counts_bad_files(tmp_path):
    write(tmp_path / "a.wav", tone())
    write(tmp_path / "b.wav", np.zeros(SR, np.float32))
    (tmp_path / "c.wav").write_bytes(b"junk" * 50)
    write(tmp_path / "d.wav", tone(sr=8000, channels=2), sr=8000)
    pd.DataFrame({"file": ["a.wav", "b.wav", "c.wav", "d.wav", "e.wav"], "lang": "en",
                  "text": ["a", "b", "c", "d", "e"]}).to_csv(tmp_path / "transcripts.csv", index=False)
    s = load_speech(tmp_path)
    assert list(s.table["file"]) == ["a.wav", "d.wav"]
    assert dict(s.drops) == {"silent": 1, "corrupt": 1, "missing": 1}
    assert s.repairs["mixed to mono"] == 1 and s.repairs["resampled 8000->16000 Hz"] == 1
    with pytest.raises(AudioInputError, match=r"b\.wav: silent"):
        load_speech(tmp_path, on_error="raise")


def test_transcripts_need_columns(tmp_path):
    (tmp_path / "t.csv").write_text("file,text\na.wav,hello\n")
    with pytest.raises(ValueError, match=r"t\.csv: missing columns \['lang'\]"):
        read_transcripts(tmp_path / "t.csv")


def test_builtin_speech_set():
    """The committed espeak-ng set: 16 kHz mono, aligned across 5 languages, < 5 MB."""
    size = sum(p.stat().st_size for p in SPEECH_DIR.rglob("*") if p.is_file())
    assert size < 5e6
    table = read_transcripts(SPEECH_DIR / "transcripts.csv")
    assert set(table["lang"]) >= {"en", "de", "fr", "es", "it"}
    assert table.groupby("id")["lang"].nunique().min() == 5
    info = sf.info(str(SPEECH_DIR / table["file"].iloc[0]))
    assert info.samplerate == SR and info.channels == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = load_speech(langs=["fr"])
    assert len(s.clips) == (table["lang"] == "fr").sum() and not s.drops and not s.repairs
    assert s.aligned(["fr"]) == sorted(table.loc[table["lang"] == "fr", "id"])


def test_find_words_uses_the_concept_table():
    slots = find_words("Der Hund schläft vor der Tür.", lexicon("de"))
    assert [(s.word, s.en) for s in slots][:1] == [("Hund", "dog")]
    assert slots[0].start == 4
