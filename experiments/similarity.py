"""Paired similarity per layer (semantic-hub paper, Sec. 3; crosslingual = the text adapter).

Method. The modality adapter yields paired sets: item i of side a and item i of side b mean
the same thing (a word and its English translation, a sentence and its translation, ...).
For every layer 0..L we capture each side at its read positions and score the pairs with the
shared comparator: baseline-adjusted cosine (paired minus unpaired), cosine after
mean-centering, linear CKA (biased and debiased), mutual k-NN and top-1 retrieval, each with
its chance/unpaired baseline and a bootstrap interval over items. A hub predicts paired
similarity above baseline that rises from the first layers into the middle layers.
"""
from __future__ import annotations

import pandas as pd
from hydra.utils import instantiate
from tqdm.auto import tqdm

from hub.context import RunContext
from hub.describe import similarity_reading
from hub.errors import UserError
from hub.pairs import compare_paired
from hub.plots import layer_curves

METRIC_LABELS = {
    "cos_adjusted": "cosine, paired − unpaired",
    "cos_centered": "cosine after mean-centering, paired − unpaired",
    "cka": "linear CKA (biased HSIC)",
    "cka_debiased": "linear CKA (unbiased HSIC)",
    "mknn": "mutual k-NN overlap",
    "retrieval_top1": "top-1 retrieval (both directions)",
}


def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg, ctx.model
    adapter = instantiate(cfg.modality)
    frames, cache = [], {}
    for pset in tqdm(list(adapter.pairs(hm if getattr(adapter, "needs_model", False) else hm.tokenizer)), desc="paired sets", disable=not cfg.progress):
        frames.append(compare_paired(hm, pset, cfg.metric, layers=cfg.experiment.layers,
                                     batch_size=cfg.batch_size, seed=cfg.seed, cache=cache))
    if not frames:
        raise UserError(f"{adapter.describe()} yielded no paired sets; check the modality config")
    df = pd.concat(frames, ignore_index=True)
    df = ctx.add(df, modality=getattr(adapter, "modality", "unknown"))
    report_similarity(ctx, df, adapter)
    return df


def report_similarity(ctx: RunContext, df: pd.DataFrame, adapter, heading: str = "Paired similarity per layer"
                      ) -> None:
    """One figure per metric (a panel per unit, a line per language/pair) and a reading."""
    figs = []
    group = "lang" if "lang" in df.columns and df["lang"].notna().all() else "pair"
    panels = "task" if "task" in df.columns and df["task"].notna().all() else None
    for metric in df["metric"].unique():
        sub = df[df["metric"] == metric]
        figs.append(layer_curves(sub, ctx.out / f"similarity_{metric}.png", group=group, panels=panels,
                                 title=METRIC_LABELS.get(metric, metric), ylabel=metric))
    drops = dict(adapter.drops)
    text = (f"Model {ctx.cfg.model.name}, adapter {adapter.describe()}. Layer 0 = embeddings, layer k = "
            f"output of block k. Dashed lines are each metric's baseline (unpaired mean, chance or permutation "
            f"null); shaded bands are {int(100 * float(ctx.cfg.metric.ci))}% bootstrap intervals over items.\n\n"
            + similarity_reading(df) + (f"\n\nDropped items: {drops}" if drops else "\n\nDropped items: none."))
    ctx.report.section(heading, text, figures=figs)
