"""Paired similarity per layer for every paired set of an adapter, with figures and a reading."""
from __future__ import annotations

from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from hub.context import RunContext
from hub.contract import PairSource
from hub.describe import similarity_reading
from hub.errors import UserError
from hub.metrics.registry import label
from hub.pairs import compare_paired
from hub.plots import layer_curves
from hub.readings import layer_ranges


def paired_similarity(ctx: RunContext, adapter: PairSource, model: Any = None, heading: str | None = None
                      ) -> pd.DataFrame:
    """Comparator rows for every paired set of ``adapter`` read by ``model`` (default ctx.model).

    Sides seen before in the run (the English side of every language, the image side of every
    caption language) are captured once. Adds the rows and a report section; layers left out
    as constant (hub.pairs) get a section of their own.
    """
    cfg = ctx.cfg
    hm = ctx.model if model is None else model
    frames, omitted, cache = [], {}, {}
    for pset in tqdm(list(adapter.pairs(hm)), desc="paired sets", disable=not cfg.progress):
        df = compare_paired(hm, pset, cfg.metric, layers=cfg.experiment.layers, batch_size=cfg.batch_size,
                            seed=cfg.seed, cache=cache)
        if df.attrs["constant_layers"]:
            omitted[pset.name] = df.attrs["constant_layers"]
        frames.append(df)
    if not frames:
        raise UserError(f"{adapter.describe()} yielded no paired sets; check the modality config")
    df = ctx.add(pd.concat(frames, ignore_index=True), modality=getattr(adapter, "modality", "unknown"))
    report_similarity(ctx, df, adapter, heading=heading or "Paired similarity per layer")
    report_constant_layers(ctx, omitted)
    return df


def report_constant_layers(ctx: RunContext, omitted: dict[str, list[int]],
                           heading: str = "Layers left out of the comparison") -> None:
    """A section listing, per paired set, the layers where one side is constant over items."""
    if omitted:
        ctx.report.section(heading,
                           "At these layers every item of one side has the same state (the read token is the same "
                           "for all items, e.g. a final period at the embedding layer), so similarity is undefined: "
                           + "; ".join(f"{k}: {layer_ranges(v)}" for k, v in omitted.items()) + ".")


def report_similarity(ctx: RunContext, df: pd.DataFrame, adapter, heading: str = "Paired similarity per layer"
                      ) -> None:
    """One figure per metric (a panel per unit, a line per language/pair) and a reading."""
    figs = []
    group = "lang" if "lang" in df.columns and df["lang"].notna().all() else "pair"
    panels = "task" if "task" in df.columns and df["task"].notna().all() else None
    for metric in df["metric"].unique():
        sub = df[df["metric"] == metric]
        figs.append(layer_curves(sub, ctx.out / f"similarity_{metric}.png", group=group, panels=panels,
                                 title=label(metric), ylabel=metric))
    drops = dict(adapter.drops)
    text = (f"Model {ctx.cfg.model.name}, adapter {adapter.describe()}. Layer 0 = embeddings, layer k = "
            f"output of block k. Dashed lines are each metric's baseline (unpaired mean, chance or permutation "
            f"null); shaded bands are {int(100 * float(ctx.cfg.metric.ci))}% bootstrap intervals over items.\n\n"
            + similarity_reading(df) + (f"\n\nDropped items: {drops}" if drops else "\n\nDropped items: none."))
    ctx.report.section(heading, text, figures=figs)
