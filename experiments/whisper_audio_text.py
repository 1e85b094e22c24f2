"""Audio ↔ text inside Whisper's decoder: is a heard sentence where the read sentence is?

Method. Per decoder layer (0 = embeddings, k = output of block k) we compare three states
of sentence i (spoken in language L) with the comparator, paired (same sentence) against
unpaired (different sentences):

* ``audio`` — the state at the last prompt token ``<|notimestamps|>`` with the spoken sentence
  as audio. Every item has the same tokens here, so anything that tells sentences apart came
  in through cross-attention from the audio.
* ``text`` — the state at the last token of the transcript given as decoder tokens after the
  same prompt, with digital silence as the audio: the decoder as a text-only model.
* ``audio+text`` — the state at the last transcript token with the audio (teacher forcing).

Paired sets: audio vs text in the same language (the cross-modal test); audio in L vs the
English text (cross-modal and cross-lingual); audio+text vs text (the literal comparison;
both sides hold the same tokens, so its paired similarity is inflated by token identity).
Layer 0 drops out of the ``audio`` sets: there it is the prompt token's embedding, the same
for every item (no variance to compare).
"""
from __future__ import annotations

import pandas as pd
import torch

from hub.context import RunContext
from hub.describe import similarity_reading
from hub.layers import select_layers
from hub.metrics.registry import label
from hub.pairs import compare_states
from hub.plots import layer_curves
from modalities import speech as wc


def run(ctx: RunContext) -> pd.DataFrame:
    cfg = ctx.cfg
    wh, sp = wc.model(ctx), wc.speech(ctx)
    layers = select_layers(cfg.experiment.layers, wh.n_layers, wh.name)
    silent = wc.silence(wh)
    text_state, audio_state, both_state = {}, {}, {}
    for lang in sp.adapter.languages:
        prefix = wh.prefix(lang)
        seqs = [prefix + wh.text_ids(t) for t in sp.texts(lang)]
        hidden = wc.encode(ctx, wh, sp, lang)[0]
        with_audio = wh.capture(seqs, layers=layers, positions="all", extra=wc.per_item(hidden),
                                batch_size=cfg.batch_size)  # list of [layer, seq, d]
        audio_state[lang] = torch.stack([s[:, len(prefix) - 1] for s in with_audio])  # [n, layer, d]
        both_state[lang] = torch.stack([s[:, -1] for s in with_audio])
        text_state[lang] = wh.capture(seqs, layers=layers, positions="last",
                                      extra=wc.per_item(silent.expand(len(seqs), -1, -1)), batch_size=cfg.batch_size)
    frames = []
    for lang in sp.adapter.languages:
        sets = [("audio vs text", audio_state[lang], text_state[lang], lang),
                ("audio+text vs text", both_state[lang], text_state[lang], lang)]
        if lang != "en" and "en" in text_state:
            sets.append(("audio vs English text", audio_state[lang], text_state["en"], "en"))
        for task, x, y, tgt in sets:
            df = compare_states(x, y, cfg.metric, layers, seed=cfg.seed)  # drops constant layers
            frames.append(df.assign(task=task, lang=lang, src=lang, tgt=tgt))
    df = ctx.add(pd.concat(frames, ignore_index=True), modality="audio")
    report(ctx, df, len(sp.ids))
    return df


def report(ctx: RunContext, df: pd.DataFrame, n: int) -> None:
    figs = []
    for metric in ("cos_adjusted", "retrieval_top1"):
        sub = df[df["metric"] == metric]
        order = [t for t in ("audio vs text", "audio vs English text", "audio+text vs text") if t in set(sub["task"])]
        figs.append(layer_curves(sub, ctx.out / f"whisper_audio_text_{metric}.png", group="lang", panels="task",
                                 panel_order=order, title=f"Whisper decoder, audio vs text: {label(metric)}",
                                 ylabel=metric))
    text = (f"{ctx.cfg.model.name}: {n} sentences per language. 'audio' = decoder state at <|notimestamps|> with "
            "the speech (identical tokens for all items); 'text' = state at the last transcript token with silent "
            "audio; 'audio+text' = the last transcript token with the speech. Dashed lines: baselines.\n\n"
            + similarity_reading(df))
    ctx.report.section("Whisper decoder: audio vs text", text, figures=figs)
