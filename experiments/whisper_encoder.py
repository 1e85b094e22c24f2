"""Does Whisper's encoder map speech in different languages to a shared space?

Method. The same sentences are spoken in several languages (espeak-ng, one voice per
language; or any folder of speech with transcripts). Each clip is padded to Whisper's 30 s
window and encoded; at every encoder layer (0 = convolution + position embedding output,
k = output of block k, before the final layer norm) we average the states over the frames
that hold speech (50 frames per second of audio). For each language paired with English
(or every pair of languages) the comparator scores sentence i in one language against
sentence i in the other, against the unpaired pairs i != j: cosine paired − unpaired,
centred cosine, linear CKA (biased and debiased), mutual k-NN and top-1 retrieval, each with
its baseline and a bootstrap interval over sentences. A shared, language-independent space
predicts paired similarity above baseline that grows with depth.

Control. Sentence length differs between sentences and correlates across languages, and
the frame mean is not blind to it: layer 0 adds a position embedding to every frame, so its
mean over the speech frames is a function of duration alone. The same comparator applied to
that position-embedding mean (task ``duration_control``) measures what duration by itself
buys; the report also gives the correlation of clip durations between languages.
Synthetic speech shares one voice per language.
"""
from __future__ import annotations

from itertools import combinations

import numpy as np
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
    layers = select_layers(cfg.experiment.layers, wh.n_encoder_layers, f"{wh.name} encoder")
    langs = sp.adapter.languages
    means = {lang: wc.encode(ctx, wh, sp, lang)[1][:, layers] for lang in langs}  # [n, layer, d]
    if cfg.experiment.get("pairs", "to_english") == "all":
        pairs = list(combinations(langs, 2))
    else:
        pairs = [(lang, "en") for lang in langs if lang != "en"]
    frames, dur = [], {lang: np.array([len(w) / 16000 for w in sp.waves(lang)]) for lang in langs}
    for a, b in pairs:
        df = compare_states(means[a], means[b], cfg.metric, layers, seed=cfg.seed)
        frames.append(df.assign(lang=a, src=a, tgt=b, pair=f"{a}-{b}", task="whisper_encoder"))
        ctrl = compare_states(position_mean(wh, dur[a]), position_mean(wh, dur[b]), cfg.metric, [0], seed=cfg.seed)
        frames.append(ctrl.assign(lang=a, src=a, tgt=b, pair=f"{a}-{b}", task="duration_control"))
    df = ctx.add(pd.concat(frames, ignore_index=True), modality="audio")
    corr = {f"{a}-{b}": float(np.corrcoef(dur[a], dur[b])[0, 1]) for a, b in pairs}
    report(ctx, df, len(sp.ids), pairs, corr)
    return df


def position_mean(wh, seconds: np.ndarray) -> torch.Tensor:
    """Mean of the encoder's position embeddings over each clip's speech frames ``[n, 1, d]``."""
    pe = wh.encoder.embed_positions.weight.detach().float().cpu()
    return torch.stack([pe[: wh.speech_frames(float(s), total=pe.shape[0])].mean(0) for s in seconds])[:, None]


def report(ctx: RunContext, df: pd.DataFrame, n: int, pairs, corr: dict[str, float]) -> None:
    group = "pair"
    figs = []
    main, ctrl = df[df["task"] == "whisper_encoder"], df[df["task"] == "duration_control"]
    for metric in ("cos_adjusted", "cos_centered", "cka_debiased", "retrieval_top1"):
        sub = main[main["metric"] == metric]
        if len(sub):
            figs.append(layer_curves(sub, ctx.out / f"whisper_encoder_{metric}.png", group=group,
                                     title=f"Whisper encoder: {label(metric)}", ylabel=metric))
    text = (f"{ctx.cfg.model.name}: {n} sentences spoken in each language, encoder states averaged over speech "
            f"frames, language pairs {', '.join(f'{a}-{b}' for a, b in pairs)}. Layer 0 = input of encoder block 1, "
            "layer k = output of block k (no final layer norm). Dashed lines: baselines (unpaired mean or chance).\n\n"
            + similarity_reading(main.assign(lang=main["pair"]))
            + "\n\n**Duration control** (the comparator on the position-embedding mean over speech frames, a function "
            "of clip duration alone; mean over pairs): "
            + ", ".join(f"{m} {v:.3f}" for m, v in ctrl.groupby("metric", sort=False)["value"].mean().items())
            + ". Correlation of clip durations between languages: "
            + ", ".join(f"{p} r = {r:.2f}" for p, r in corr.items()) + ".")
    ctx.report.section("Whisper encoder: the same sentence in different languages", text, figures=figs)
