"""Does Whisper work in English? The decoder logit lens while transcribing non-English speech.

Method. For each spoken non-English sentence we feed Whisper's decoder the prompt
``<|startoftranscript|><|lang|><|transcribe|><|notimestamps|>`` followed by the reference
transcript (teacher forcing). Wherever the next word of the transcript is a word of the
project's concept table (e.g. German "Hund"), we read the decoder state just before it at
every decoder layer (0 = token + position embedding, k = output of block k) through the
final layer norm and the unembedding, and sum the next-token probability over the token
set of the spoken-language word and over that of its English translation ("dog"); token
sets hold every token prefix of the word with and without the leading space, in lower and
capitalised spelling. Items whose two token sets overlap or whose words coincide are dropped
and counted. A decoder that works in English predicts p(English) above p(spoken language) in
middle layers. Control: the same token sequence with digital silence as the audio (the
decoder as a text-only language model).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from hub.context import RunContext
from hub.describe import latent_reading
from hub.errors import UserError
from hub.layers import select_layers
from hub.lens import LogitLens
from hub.lens.tokensets import token_set
from hub.plots import layer_curves
from hub.readings import min_prob_of, rule_text
from hub.models.whisper import WhisperHub
from hub.stats import mean_ci
from modalities import speech as wc
from modalities.audio import find_words, lexicon


@dataclass
class Slot:
    """One read position: clip row, token index before the word, and the two token sets."""

    clip: int
    pos: int
    word: str
    en: str
    target: frozenset[int]
    english: frozenset[int]


def word_set(tokenizer, word: str) -> frozenset[int]:
    """Token set of a word in the spellings a transcript may use (as is, lower, Capitalised)."""
    forms = {word, word.lower(), word[:1].upper() + word[1:]}
    return frozenset().union(*(token_set(tokenizer, f) for f in forms))


def slots_for(wh: WhisperHub, texts: list[str], lang: str, drops: dict) -> tuple[list[list[int]], list[Slot]]:
    """Teacher-forced token sequences per clip and the positions to read in them."""
    lex = lexicon(lang)
    seqs, slots = [], []
    for c, text in enumerate(texts):
        prefix = wh.prefix(lang)
        full = wh.text_ids(text)
        seqs.append(prefix + full)
        for w in find_words(text, lex):
            before = text[: w.start].strip()
            head = wh.text_ids(before) if before else []
            if full[: len(head)] != head:
                drops["word boundary not a token boundary"] = drops.get("word boundary not a token boundary", 0) + 1
                continue
            if w.word.lower() == w.en.lower():
                drops["word equals its English translation"] = drops.get("word equals its English translation", 0) + 1
                continue
            tgt, eng = word_set(wh.tokenizer, w.word), word_set(wh.tokenizer, w.en)
            if not tgt or not eng or tgt & eng:
                drops["token sets empty or overlapping"] = drops.get("token sets empty or overlapping", 0) + 1
                continue
            slots.append(Slot(c, len(prefix) + len(head) - 1, w.word, w.en, tgt, eng))
    return seqs, slots


def run(ctx: RunContext) -> pd.DataFrame:
    cfg = ctx.cfg
    wh, sp = wc.model(ctx), wc.speech(ctx)
    layers = select_layers(cfg.experiment.layers, wh.n_layers, wh.name)
    lens = LogitLens(wh, apply_norm=cfg.lens_norm)
    conditions = list(cfg.experiment.get("conditions", ["speech", "silence"]))
    frames, drops, examples = [], {}, []
    for lang in [x for x in sp.adapter.languages if x != "en"]:
        seqs, slots = slots_for(wh, sp.texts(lang), lang, drops)
        if len(slots) < 2:
            drops[f"{lang}: fewer than 2 readable words"] = len(slots)
            continue
        for cond in conditions:
            hidden = wc.encode(ctx, wh, sp, lang)[0] if cond == "speech" else wc.silence(wh).expand(len(seqs), -1, -1)
            states = wh.capture(seqs, layers=layers, positions="all", extra=wc.per_item(hidden),
                                batch_size=cfg.batch_size)  # list of [layer, seq, d]
            x = torch.stack([states[s.clip][:, s.pos] for s in slots])  # [n, layer, d]
            red = lens.reduce(x, token_sets=[[list(s.target), list(s.english)] for s in slots], top_k=1)
            frames.append(_rows(red["set_prob"].numpy(), red["entropy"].numpy(), layers, lang, cond))
            if cond == "speech":
                top = red["top_ids"][:, -1, 0].tolist()
                examples += [{"lang": lang, "word": s.word, "English": s.en,
                              "last-layer top-1": wh.tokenizer.decode([t]),
                              "p(word) last": float(red["set_prob"][i, -1, 0]),
                              "p(English) max over layers": float(red["set_prob"][i, :, 1].max())}
                             for i, (s, t) in enumerate(zip(slots, top))]
    if not frames:
        raise UserError(f"no readable words in any language (drops: {drops})")
    df = ctx.add(pd.concat(frames, ignore_index=True), modality="audio", task="whisper_lens")
    report(ctx, df, drops, pd.DataFrame(examples))
    return df


def _rows(set_prob: np.ndarray, entropy: np.ndarray, layers: list[int], lang: str, cond: str) -> pd.DataFrame:
    """Tidy per-layer means and intervals: lang_prob for the spoken word and English, entropy."""
    rows, n = [], set_prob.shape[0]
    for s, name in enumerate((lang, "en")):
        m, lo, hi = mean_ci(set_prob[:, :, s], bounds=(0.0, 1.0))
        rows += [{"metric": "lang_prob", "lang": name, "layer": k, "value": m[j], "ci_low": lo[j], "ci_high": hi[j],
                  "n": n} for j, k in enumerate(layers)]
    m, lo, hi = mean_ci(entropy, bounds=(0.0, np.inf))
    rows += [{"metric": "entropy", "lang": "all", "layer": k, "value": m[j], "ci_low": lo[j], "ci_high": hi[j], "n": n}
             for j, k in enumerate(layers)]
    return pd.DataFrame(rows).assign(src=lang, tgt=lang, condition=cond)


def report(ctx: RunContext, df: pd.DataFrame, drops: dict, examples: pd.DataFrame) -> None:
    figs, readings = [], []
    for cond, d in df[df["metric"] == "lang_prob"].groupby("condition", sort=False):
        d = d.assign(series=np.where(d["lang"] == "en", "English", "spoken language"))
        figs.append(layer_curves(d, ctx.out / f"whisper_lens_{cond}.png", group="series", panels="src",
                                 baseline_col=None, title=f"audio: {cond}", ylabel="probability", ylim=(0, 1)))
        for src, s in d.groupby("src", sort=False):
            readings.append(f"- **{src}, audio = {cond}** (n = {int(s['n'].iloc[0])}): "
                            + latent_reading(s, src, "en", min_prob_of(ctx.cfg), state_rule=False))
    text = (f"{ctx.cfg.model.name}, decoder layers 0..{int(df['layer'].max())}, logit lens with "
            f"{'the' if ctx.cfg.lens_norm else 'no'} final layer norm, at the position before each concept word of the "
            "teacher-forced transcript.\n\n" + "\n".join(readings) + "\n\n" + rule_text(min_prob_of(ctx.cfg))
            + f"\n\nDropped read positions: {drops or 'none'}.")
    ctx.report.section("Whisper decoder logit lens: spoken language vs English", text, figures=figs,
                       table=examples.head(12) if len(examples) else None)
