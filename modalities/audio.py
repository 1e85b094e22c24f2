"""Speech: load audio files robustly and pair spoken items with text.

Loading (``load_audio``) returns 16 kHz mono float32 samples. Every repair is named and
counted (``Clip.repairs``), every refusal is an :class:`AudioInputError` naming the file:

==========================================  ==================================================
input                                        what happens
==========================================  ==================================================
missing file, unknown extension              error (lists the supported extensions)
corrupt bytes / unreadable container         error ("not a readable audio file")
WAV whose data chunk is cut short            error ("truncated": declared vs present bytes)
no samples                                   error ("empty")
NaN / inf samples                            error, or with ``nonfinite="zero"`` set to 0 (repair)
several channels                             mixed down to mono by averaging (repair)
another sample rate                          resampled to 16 kHz with torchaudio (repair)
peak below ``silence_db`` dBFS               error ("silent"; nothing to read)
longer than ``max_seconds``                  truncated, with a warning (repair)
==========================================  ==================================================

Files are decoded by ``torchaudio.load`` where its backend (TorchCodec) is installed and by
libsndfile (``soundfile``, a dependency) otherwise; resampling is ``torchaudio.functional``.

A speech data set is a folder of audio files plus a transcripts table (CSV or JSONL) with
columns ``file, lang, text`` and optionally ``id`` (the item across languages), ``en``
(English translation) and ``kind`` (``sentence`` | ``word``). The built-in set lives in
``modalities/data/speech`` (espeak-ng, see ``make_speech.py`` there).
"""
from __future__ import annotations

import math
import struct
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hub.contract import PairedSet, Side
from hub.errors import UserError, UserFileError
from modalities.base import Adapter, check_min_pairs, register_adapter

SAMPLE_RATE = 16_000
SPEECH_DIR = Path(__file__).parent / "data" / "speech"
# what libsndfile reads (mp3 needs libsndfile >= 1.1); TorchCodec adds more when installed
SUPPORTED = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64")


class AudioInputError(UserError):
    """An audio file that cannot be used; the message names the file and what was expected."""

    def __init__(self, path: str | Path, problem: str, reason: str = "unreadable") -> None:
        super().__init__(f"{path}: {problem}")
        self.path, self.reason = str(path), reason


@dataclass
class Clip:
    """Mono samples ``wave [T]`` (float32) at ``sr`` Hz, and the repairs made on the way."""

    wave: np.ndarray
    sr: int
    path: str
    repairs: tuple[str, ...] = ()

    @property
    def seconds(self) -> float:
        return len(self.wave) / self.sr


# ----------------------------------------------------------------------------- decoding
def _torchaudio_backend() -> bool:
    try:
        import torchcodec  # noqa: F401
    except ImportError:
        return False
    return True


def _check_wav_length(path: Path) -> None:
    """Raise if a RIFF/WAVE file's data chunk declares more bytes than the file holds."""
    raw = path.read_bytes()
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return  # not RIFF/WAVE: left to the decoder
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        if cid == b"data":
            present = len(raw) - pos - 8
            if size not in (0, 0xFFFFFFFF) and present < size:
                raise AudioInputError(path, f"truncated WAV file: the data chunk declares {size} bytes but only "
                                            f"{present} are present", "truncated")
            return
        pos += 8 + size + (size & 1)
    raise AudioInputError(path, "truncated WAV file: no data chunk after the header", "truncated")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file to ``[channels, T]`` float32 and its sample rate; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise AudioInputError(path, "no such audio file", "missing")
    if path.suffix.lower() not in SUPPORTED and not _torchaudio_backend():
        raise AudioInputError(path, f"unsupported audio format {path.suffix or '(no extension)'!r}; "
                                    f"expected one of {', '.join(SUPPORTED)}", "unsupported format")
    if path.suffix.lower() == ".wav":
        _check_wav_length(path)
    if _torchaudio_backend():
        import torchaudio
        try:
            wave, sr = torchaudio.load(str(path))
            return wave.numpy().astype(np.float32, copy=False), int(sr)
        except Exception as e:  # noqa: BLE001 - decoder errors vary by backend
            raise AudioInputError(path, f"not a readable audio file (corrupt or unsupported: {e})", "corrupt") from e
    import soundfile as sf
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [T, channels]
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types
        raise AudioInputError(path, f"not a readable audio file (corrupt or unsupported: {e})", "corrupt") from e
    return np.ascontiguousarray(data.T), int(sr)


# ------------------------------------------------------------------------------ loading
def resample(wave: np.ndarray, sr: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Band-limited resampling (torchaudio). ``[..., T] -> [..., T * target / sr]``."""
    import torchaudio

    if sr == target:
        return wave
    return torchaudio.functional.resample(torch.from_numpy(np.ascontiguousarray(wave)), sr, target).numpy()


def load_audio(
    path: str | Path,
    sr: int = SAMPLE_RATE,
    max_seconds: float | None = None,
    nonfinite: str = "error",
    silence_db: float = -60.0,
) -> Clip:
    """Load one file as mono ``sr`` Hz float32 (see the module table for every bad input)."""
    if nonfinite not in ("error", "zero"):
        raise UserError(f"nonfinite={nonfinite!r}: expected 'error' or 'zero'")
    wave, file_sr = read_audio(path)
    repairs: list[str] = []
    if wave.size == 0:
        raise AudioInputError(path, "empty audio file (no samples)", "empty")
    bad = ~np.isfinite(wave)
    if bad.any():
        if nonfinite == "error":
            raise AudioInputError(path, f"{int(bad.sum())} NaN/inf samples of {wave.size}; pass "
                                        "nonfinite='zero' to set them to 0", "non-finite samples")
        wave = np.where(bad, 0.0, wave).astype(np.float32)
        repairs.append("non-finite samples set to 0")
    if wave.shape[0] > 1:
        wave = wave.mean(0, keepdims=True)
        repairs.append("mixed to mono")
    if file_sr != sr:
        wave = resample(wave, file_sr, sr)
        repairs.append(f"resampled {file_sr}->{sr} Hz")
    wave = wave[0].astype(np.float32, copy=False)
    peak = float(np.abs(wave).max())
    if peak <= 10 ** (silence_db / 20):
        level = "-inf" if peak == 0 else f"{20 * math.log10(peak):.1f}"
        raise AudioInputError(path, f"silent audio (peak {level} dBFS <= {silence_db} dBFS); nothing to read", "silent")
    if max_seconds is not None and len(wave) > max_seconds * sr:
        warnings.warn(f"{path}: {len(wave) / sr:.1f} s is longer than the model window of {max_seconds:.0f} s; "
                      "truncated", stacklevel=2)
        wave = wave[: int(max_seconds * sr)]
        repairs.append("truncated to the model window")
    return Clip(wave, sr, str(path), tuple(repairs))


# ------------------------------------------------------------------------- speech sets
TRANSCRIPT_COLUMNS = ("file", "lang", "text")


@dataclass
class SpeechSet:
    """Loaded clips with their transcripts (``table`` rows align with ``clips``)."""

    table: pd.DataFrame
    clips: list[Clip]
    drops: Counter = field(default_factory=Counter)
    repairs: Counter = field(default_factory=Counter)

    def select(self, lang: str | None = None, kind: str | None = None) -> SpeechSet:
        keep = np.ones(len(self.table), dtype=bool)
        if lang is not None:
            keep &= (self.table["lang"] == lang).to_numpy()
        if kind is not None and "kind" in self.table:
            keep &= (self.table["kind"] == kind).to_numpy()
        idx = np.flatnonzero(keep)
        return SpeechSet(self.table.iloc[idx].reset_index(drop=True), [self.clips[i] for i in idx],
                         self.drops, self.repairs)

    def by_id(self, lang: str, kind: str | None = None) -> dict[str, int]:
        """Row index of each item id spoken in ``lang``."""
        t = self.table
        mask = (t["lang"] == lang) & ((t["kind"] == kind) if kind and "kind" in t else True)
        return {str(t.at[i, "id"]): int(i) for i in t.index[mask]}

    def aligned(self, langs: Sequence[str], kind: str | None = None) -> list[str]:
        """Item ids spoken in every one of ``langs`` (sorted)."""
        sets = [set(self.by_id(lang, kind)) for lang in langs]
        return sorted(set.intersection(*sets)) if sets else []


def read_transcripts(path: str | Path) -> pd.DataFrame:
    """A transcripts table (CSV or JSONL) with at least ``file, lang, text``."""
    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"{path}: no transcripts file (expected CSV/JSONL with columns file, lang, text)")
    if path.suffix in (".jsonl", ".json"):
        df = pd.read_json(path, lines=True, dtype=str)
    else:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in TRANSCRIPT_COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing columns {missing}; expected at least {list(TRANSCRIPT_COLUMNS)} "
                         "(optional: id, en, kind)")
    df = df.fillna("")
    if "id" not in df.columns:
        df["id"] = [Path(f).stem for f in df["file"]]
    return df


def load_speech(
    folder: str | Path = SPEECH_DIR,
    transcripts: str | Path | None = None,
    langs: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    max_seconds: float | None = 30.0,
    nonfinite: str = "error",
    on_error: str = "drop",
) -> SpeechSet:
    """Load a folder of speech plus transcripts; unusable files are dropped and counted
    (``on_error="drop"``) or raise (``"raise"``)."""
    folder = Path(folder)
    table = read_transcripts(transcripts or folder / "transcripts.csv")
    if langs:
        table = table[table["lang"].isin(list(langs))]
    if kinds and "kind" in table:
        table = table[table["kind"].isin(list(kinds))]
    rows, clips, drops, repairs = [], [], Counter(), Counter()
    unread: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i, row in table.iterrows():
            try:
                clip = load_audio(folder / row["file"], max_seconds=max_seconds, nonfinite=nonfinite)
            except AudioInputError as e:
                if on_error == "raise":
                    raise
                drops[e.reason] += 1
                unread.append(f"{row['file']} ({e.reason})")
                continue
            if not str(row["text"]).strip():
                if on_error == "raise":
                    raise UserError(f"{folder / row['file']}: empty transcript")
                drops["empty transcript"] += 1
                continue
            repairs.update(clip.repairs)
            rows.append(i)
            clips.append(clip)
    for w in caught:
        if "truncated" not in str(w.message):
            warnings.warn(w.message, w.category, stacklevel=2)
    if repairs["truncated to the model window"]:
        warnings.warn(f"{folder}: {repairs['truncated to the model window']} clips longer than {max_seconds} s "
                      "were truncated", stacklevel=2)
    if len(table) and not clips and unread:
        raise UserError(f"{folder}: {len(unread)} of {len(table)} audio files could not be read: "
                        f"{', '.join(unread[:10])}{', ...' if len(unread) > 10 else ''}; expected readable audio "
                        "files with transcripts")
    return SpeechSet(table.loc[rows].reset_index(drop=True), clips, drops, repairs)


# ----------------------------------------------------------------------------- adapter
@register_adapter("audio")
class AudioAdapter(Adapter):
    """Spoken items vs text, for audio language models (e.g. Qwen2-Audio).

    Side a: the clip inside the model's audio prompt, read at the audio-token span (mean or
    last); side b: the transcript (``text_lang: same``) or its English translation
    (``text_lang: en``), read at the last token. ``pairs`` needs the model's processor.
    """

    modality = "audio"

    def __init__(self, folder: str | Path = SPEECH_DIR, transcripts: str | Path | None = None,
                 languages: Sequence[str] = ("en", "de", "fr", "es", "it"), kind: str | None = "sentence",
                 text_lang: str = "same", audio_positions: str = "mean", text_template: str = "{x}",
                 prompt: str | None = None, max_items: int | None = None, nonfinite: str = "error") -> None:
        super().__init__()
        if text_lang not in ("same", "en"):
            raise UserError(f"text_lang={text_lang!r}: expected 'same' or 'en'")
        if audio_positions not in ("mean", "last"):
            raise UserError(f"audio_positions={audio_positions!r}: expected 'mean' or 'last'")
        self.folder, self.transcripts = folder, transcripts
        self.languages, self.kind, self.text_lang = list(languages), kind, text_lang
        self.audio_positions, self.text_template, self.prompt = audio_positions, text_template, prompt
        self.max_items, self.nonfinite = max_items, nonfinite

    def load(self) -> SpeechSet:
        s = load_speech(self.folder, self.transcripts, langs=self.languages, kinds=[self.kind] if self.kind else None,
                        nonfinite=self.nonfinite)
        self.drops.update(s.drops)
        return s

    def pairs(self, model=None) -> Iterator[PairedSet]:
        if not hasattr(model, "encode_audio"):
            raise UserError("AudioAdapter.pairs needs the audio-language model (hub.models.vlm.MultimodalHubModel), "
                             f"got {type(model).__name__}")
        speech = self.load()
        for lang in self.languages:
            sub = speech.select(lang=lang, kind=self.kind)
            n = len(sub.clips) if self.max_items is None else min(self.max_items, len(sub.clips))
            if n == 0:
                self.drop(f"no clips in {lang}")
                continue
            check_min_pairs(n, f"audio {lang}")
            enc = [model.encode_audio(c.wave, self.prompt) for c in sub.clips[:n]]
            col = "text" if self.text_lang == "same" or "en" not in sub.table else "en"
            texts = [self.text_template.format(x=t) for t in sub.table[col].tolist()[:n]]
            yield PairedSet(
                name=f"audio:{lang}-{'text' if col == 'text' else 'en'}",
                a=Side([e.ids for e in enc], "audio", self.audio_positions if self.audio_positions == "mean"
                       else [[e.positions[-1]] for e in enc], spans=[e.span for e in enc],
                       extra=[e.extra for e in enc], label=f"audio:{lang}"),
                b=Side(texts, "text", "last", label=f"text:{lang if col == 'text' else 'en'}"),
                ids={"task": "audio-text", "lang": lang, "src": lang, "tgt": lang if col == "text" else "en",
                     "modality": "audio"},
                items=sub.table["id"].tolist()[:n],
            )


# ------------------------------------------------------------- words inside transcripts
WORDS = Path(__file__).parent / "data" / "words.csv"


@dataclass(frozen=True)
class WordSlot:
    """A concept word inside a transcript: where it starts and its English translation."""

    start: int  # character offset in the transcript
    word: str  # as written in the transcript
    en: str  # the concept's English word
    concept: str


def lexicon(lang: str, words: str | Path = WORDS) -> dict[str, tuple[str, str]]:
    """Lower-cased word form in ``lang`` -> (concept, English word), from the concept table."""
    table = pd.read_csv(words, dtype=str, keep_default_na=False)
    if lang not in table.columns or "en" not in table.columns:
        raise UserError(f"{words}: needs columns 'en' and {lang!r} (one column per language)")
    ids = table["concept"] if "concept" in table.columns else table["en"]
    out: dict[str, tuple[str, str]] = {}
    for concept, form, en in zip(ids, table[lang], table["en"]):
        if form.strip() and " " not in form.strip():
            out.setdefault(form.strip().lower(), (concept, en.strip()))
    return out


def find_words(text: str, lex: dict[str, tuple[str, str]]) -> list[WordSlot]:
    """Every whole word of ``text`` that is a lexicon form, in order."""
    import re

    slots = []
    for m in re.finditer(r"\w+", text):
        hit = lex.get(m.group(0).lower())
        if hit:
            slots.append(WordSlot(m.start(), m.group(0), hit[1], hit[0]))
    return slots
