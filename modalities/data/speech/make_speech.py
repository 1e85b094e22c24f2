"""Generate the built-in speech set with espeak-ng (run once; the outputs are committed).

    apt-get install -y espeak-ng
    .venv/bin/python modalities/data/speech/make_speech.py

Speaks the first N_SENTENCES parallel sentences (modalities/data/sentences.csv) in LANGS with
espeak-ng's default voice of each language, trims leading/trailing silence to 50 ms, resamples
to 16 kHz mono and stores 8-bit mu-law WAV files (16 kB/s; the set stays under 5 MB).
Mu-law keeps whisper-base's transcripts intact; 4-bit IMA-ADPCM (half the size) did not
("The dog is sleeping..." became "The Noggin Sleeping..."). ``transcripts.csv`` lists
``file, id, kind, lang, text, en`` (``en`` = the English version of the same sentence).
Synthetic speech from one voice per language: a clean, controlled set, not natural speech.
"""
from __future__ import annotations

import csv
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

HERE = Path(__file__).resolve().parent
DATA = HERE.parent
LANGS = ("en", "de", "fr", "es", "it")
VOICES = {"en": "en-us", "de": "de", "fr": "fr-fr", "es": "es", "it": "it"}
N_SENTENCES = 25
SR = 16_000
SPEED_WPM = 165


def speak(text: str, lang: str) -> np.ndarray:
    """espeak-ng -> 16 kHz mono float32, silence trimmed to 50 ms on each side."""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        subprocess.run(["espeak-ng", "-v", VOICES[lang], "-s", str(SPEED_WPM), "-w", f.name, text], check=True)
        wave, sr = sf.read(f.name, dtype="float32", always_2d=True)
    wave = torchaudio.functional.resample(torch.from_numpy(wave.mean(1)), sr, SR).numpy()
    loud = np.flatnonzero(np.abs(wave) > 0.01)
    pad = int(0.05 * SR)
    return wave[max(0, loud[0] - pad): loud[-1] + pad] if loud.size else wave


def main() -> None:
    with open(DATA / "sentences.csv", encoding="utf-8") as f:
        sentences = list(csv.DictReader(f))[:N_SENTENCES]
    rows = []
    for kind, table, key in (("sentence", sentences, "id"),):
        for item in table:
            for lang in LANGS:
                name = f"{kind}s/{lang}/{item[key]}.wav"
                (HERE / name).parent.mkdir(parents=True, exist_ok=True)
                wave = speak(item[lang], lang)
                sf.write(HERE / name, wave, SR, subtype="ULAW")
                rows.append({"file": name, "id": item[key], "kind": kind, "lang": lang, "text": item[lang],
                             "en": item["en"]})
    with open(HERE / "transcripts.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "id", "kind", "lang", "text", "en"])
        w.writeheader()
        w.writerows(rows)
    size = sum(p.stat().st_size for p in HERE.rglob("*.wav"))
    print(f"{len(rows)} clips, {size / 2**20:.2f} MiB", file=sys.stderr)


if __name__ == "__main__":
    main()
