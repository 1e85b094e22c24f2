"""Where do a dual encoder's image and text towers meet? open_clip, layer by layer.

Method. Images go through the image tower and captions (each language in turn) through
the text tower; we read both residual streams at every block (0 = block-1 input, k = output
of block k) at the position each tower pools (class token / patch mean; end-of-text token)
and the final normalised embeddings in the joint space. The towers' hidden widths and
depths differ, so per layer we pair image layer k with text layer round(k·L_text/L_image)
(the same relative depth) and use only width-free metrics (linear CKA biased and debiased,
mutual k-NN); the joint embeddings get every comparator metric. Pairs are image i and
caption i against the unpaired i != j, with each metric's baseline and bootstrap interval.
Layers where one side is the same vector for every item (the image class token before the
first block) are left out. Unlike a decoder LM, a dual encoder has no shared stream until the projection: the towers
should agree only near the top, and only in the languages the text tower was trained on.
"""
from __future__ import annotations

import pandas as pd
from hydra.utils import instantiate

from hub.context import RunContext
from hub.describe import similarity_reading
from hub.errors import UserError
from hub.metrics.registry import label, width_free
from hub.pairs import compare_states
from hub.plots import layer_curves


def run(ctx: RunContext) -> pd.DataFrame:
    cfg = ctx.cfg
    cm = ctx.model
    adapter = instantiate(cfg.modality)
    items = adapter.items()
    img_states, img_embed = cm.image_states([it.image for it in items], batch_size=cfg.batch_size)
    frames = []
    for lang in adapter.languages:
        have = [i for i, it in enumerate(items) if lang in it.captions]
        if len(have) < 4:
            adapter.drop(f"fewer than 4 {lang} captions", len(have))
            continue
        txt_states, txt_embed = cm.text_states([items[i].captions[lang] for i in have], batch_size=cfg.batch_size)
        ids = dict(lang=lang, src="image", tgt=lang)
        final = compare_states(img_embed[have][:, None], txt_embed[:, None], cfg.metric, [-1], seed=cfg.seed)
        frames.append(final.assign(task="joint embedding", **ids))
        if img_states is not None and txt_states is not None:
            Li, Lt = img_states.shape[1] - 1, txt_states.shape[1] - 1
            match = [round(k * Lt / Li) for k in range(Li + 1)]
            free = width_free()  # the towers' widths differ: only metrics that allow it (registry)
            metric = dict(cfg.metric, names=[m for m in cfg.metric.names if m in free] or list(width_free(True)))
            per = compare_states(img_states[have], txt_states[:, match], metric, list(range(Li + 1)), seed=cfg.seed)
            frames.append(per.assign(task="towers", text_layer=per["layer"].map(dict(enumerate(match))), **ids))
    if not frames:
        raise UserError("no caption language has 4 or more captions")
    df = ctx.add(pd.concat(frames, ignore_index=True), modality="image")
    report(ctx, df, adapter)
    return df


def report(ctx: RunContext, df: pd.DataFrame, adapter) -> None:
    figs = []
    towers = df[df["task"] == "towers"]
    for metric in towers["metric"].unique():
        figs.append(layer_curves(towers[towers["metric"] == metric], ctx.out / f"clip_towers_{metric}.png",
                                 group="lang", title=f"{label(metric)}: image layer k vs text layer at the same depth",
                                 ylabel=metric))
    joint = df[df["task"] == "joint embedding"]
    table = joint[["lang", "metric", "value", "ci_low", "ci_high", "baseline"]].reset_index(drop=True)
    text = (f"{ctx.cfg.model.name}: {int(df['n'].max())} images, captions in {', '.join(joint['lang'].unique())}. "
            "Tower rows: x = image-tower layer (text layer at the same relative depth in column text_layer). "
            "The table gives the joint-embedding scores (layer -1 in results.csv).\n\n"
            + (similarity_reading(towers) if len(towers) else "No per-layer tower states (towers without resblocks).")
            + (f"\n\nDropped: {dict(adapter.drops)}" if adapter.drops else ""))
    ctx.report.section("Dual encoder: image tower vs text tower", text, figures=figs, table=table)
