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
decoder as a text-only language model). Lenses: the ``lens=`` group (logit by default, or any
registered lens that reads states by layer, e.g. a tuned lens trained for this model; several
in one job, each with its own rows, lines and reading). The patchscope is refused: it decodes
a state by running its text identity prompt through the model, and Whisper's decoder has no
forward without audio, so which audio the identity prompt should hear is not defined.
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
from hub.lens import Lens
from hub.lens.tokensets import token_set
from hub.plots import layer_curves
from hub.readings import min_prob_of, rule_text
from hub.models.whisper import WhisperHub
from hub.stats import mean_ci
from hub.steps.lenses import configured_lenses, lens_label, lens_norms, lens_series, per_lens, per_lens_text
from modalities import speech as wc
from modalities.audio import find_words, lexicon

REFUSED = {"patchscope": "the patchscope runs its text identity prompt through the model, but Whisper's decoder "
                         "has no forward without audio (its identity prompt would need an audio input of its own)"}


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
    lenses = configured_lenses(cfg, wh, experiment="whisper_lens", refuse=REFUSED)
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
            sets = [[list(s.target), list(s.english)] for s in slots]

            def read(name: str, lens: Lens) -> pd.DataFrame:
                red = lens.reduce(x, token_sets=sets, top_k=1, layers=layers)
                if cond == "speech":
                    examples.extend(_examples(wh, red, slots, lang, name))
                return _rows(red["set_prob"].numpy(), red["entropy"].numpy(), layers, lang, cond)

            frames.append(per_lens(lenses, read))
    if not frames:
        raise UserError(f"no readable words in any language (drops: {drops})")
    df = ctx.add(pd.concat(frames, ignore_index=True), modality="audio", task="whisper_lens")
    report(ctx, df, drops, pd.DataFrame(examples), lenses)
    return df


def _examples(wh: WhisperHub, red: dict, slots: list[Slot], lang: str, lens: str) -> list[dict]:
    """Per read word under one lens: its last-layer top-1 token and the two probabilities."""
    top = red["top_ids"][:, -1, 0].tolist()
    return [{"lens": lens, "lang": lang, "word": s.word, "English": s.en, "last-layer top-1": wh.tokenizer.decode([t]),
             "p(word) last": float(red["set_prob"][i, -1, 0]),
             "p(English) max over layers": float(red["set_prob"][i, :, 1].max())}
            for i, (s, t) in enumerate(zip(slots, top))]


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


def report(ctx: RunContext, df: pd.DataFrame, drops: dict, examples: pd.DataFrame, lenses: dict[str, Lens]) -> None:
    figs, min_prob = [], min_prob_of(ctx.cfg)
    probs = df[df["metric"] == "lang_prob"]
    for cond, d in probs.groupby("condition", sort=False):
        d, order = lens_series(d.assign(kind=np.where(d["lang"] == "en", "English", "spoken language")), "kind",
                               order=["English", "spoken language"])
        figs.append(layer_curves(d, ctx.out / f"whisper_lens_{cond}.png", group="series", panels="src",
                                 group_order=order, baseline_col=None, title=f"audio: {cond} ({lens_label(lenses)})",
                                 ylabel="probability", ylim=(0, 1)))

    def reading(d: pd.DataFrame, _: str) -> str:
        return "\n".join(f"- **{src}, audio = {cond}** (n = {int(s['n'].iloc[0])}): "
                         + latent_reading(s, src, "en", min_prob, state_rule=False)
                         for cond, c in d.groupby("condition", sort=False) for src, s in c.groupby("src", sort=False))

    text = (f"{ctx.cfg.model.name}, decoder layers 0..{int(df['layer'].max())}, {lens_label(lenses)} at the position "
            f"before each concept word of the teacher-forced transcript. {lens_norms(lenses)}.\n\n"
            + per_lens_text(probs, reading, block=True) + "\n\n" + rule_text(min_prob)
            + f"\n\nDropped read positions: {drops or 'none'}.")
    table = examples.head(12 * len(lenses)) if len(examples) else None
    ctx.report.section(f"Whisper decoder {lens_label(lenses)}: spoken language vs English", text, figures=figs,
                       table=table)
