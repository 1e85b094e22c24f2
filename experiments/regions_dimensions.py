"""Dimension dependence of the core linguistic region (Zhang et al. 2024, Sec. 4).

Method. We score the core region as in ``regions_ablation`` (or load it). On the scoring text
we measure each hidden dimension's mean |activation| over the residual stream (block outputs
1..L, all tokens): a few *outlier* dimensions carry massive activations. For one dimension at
a time we perturb only the core-region entries that read that dimension (its input column in
q/k/v/gate/up-like matrices) or write it (its output row in o/down-like matrices) — a tiny
fraction of the model — and measure perplexity per language on held-out text. Controls:
dimensions drawn at random (fixed seed) from the lower half of the activation profile, perturbed
the same way.

Expected (a check, not a target): perturbing the core region along an outlier dimension breaks
the model in every language; the same number of edits along an ordinary dimension barely
matters.
"""
from __future__ import annotations

import random

import numpy as np
import pandas as pd

from hub.context import RunContext
from hub.errors import UserError
from hub.plots import line_styles, save_fig
from hub.regions import NONE, dimension_mask, edit, outlier_dimensions, scale_by
from hub.steps.regions import eval_rows, get_regions, load_splits, wants_mono


def pick_controls(score, exclude: list[int], n: int, seed: int) -> list[int]:
    """``n`` dimensions drawn from those with below-median mean |activation|."""
    med = float(score.median())
    pool = [i for i in range(len(score)) if float(score[i]) <= med and i not in exclude]
    return sorted(random.Random(seed).sample(pool, min(n, len(pool))))


def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg, ctx.model
    e = cfg.experiment
    if e.mode not in ("zero", "scale"):
        raise UserError(f"experiment.mode must be 'zero' or 'scale', got {e.mode!r}")
    scoring, held_out = load_splits(cfg)
    regions = get_regions(ctx, hm, scoring, mono=wants_mono([e.region]))
    base = regions[str(e.region)]
    outliers, score = outlier_dimensions(hm, scoring, top=int(e.n_outliers), window=int(e.window),
                                         tokens=int(e.activation_tokens), batch_size=int(e.batch_size))
    controls = pick_controls(score, outliers, int(e.n_controls), int(cfg.seed))
    factor = 0.0 if e.mode == "zero" else float(e.factor)
    median = float(score.median())
    prof = pd.DataFrame({"metric": "mean_abs_activation", "layer": -1, "dim": np.arange(len(score)),
                         "value": score.numpy(), "n": 1})
    rows = eval_rows(hm, held_out, cfg, region=NONE, dim=-1, dim_kind=NONE, region_params=0)
    for kind, dims in (("outlier", outliers), ("control", controls)):
        for d in dims:
            mask = dimension_mask(hm, base, d)
            with edit(hm, mask, scale_by(factor)):
                rows += eval_rows(hm, held_out, cfg, region=mask.name, dim=d, dim_kind=kind,
                                  region_params=mask.count(), activation_ratio=float(score[d]) / median)
    df = pd.concat([pd.DataFrame(rows), prof], ignore_index=True)
    df = ctx.add(df, task="dimensions")
    report(ctx, df, outliers, controls, score, factor)
    return df


def report(ctx: RunContext, df: pd.DataFrame, outliers, controls, score, factor: float) -> None:
    import matplotlib.pyplot as plt

    ppl = df[df.metric == "perplexity"]
    table = ppl.pivot_table(index=["region", "dim_kind", "region_params"], columns="lang", values="value",
                            sort=False)
    table = table[list(dict.fromkeys(ppl["lang"]))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    ax = axes[0]
    ax.plot(score.numpy(), lw=0.8, color="0.4")
    for d in outliers:
        ax.plot([d], [float(score[d])], "o", color="C3")
        ax.annotate(str(d), (d, float(score[d])), fontsize=8)
    for d in controls:
        ax.plot([d], [float(score[d])], "x", color="C0")
    ax.set_yscale("log")
    ax.set_xlabel("hidden dimension")
    ax.set_ylabel("mean |activation| (blocks 1..L)")
    ax.set_title("activation profile: outliers (o), controls (x)")
    ax = axes[1]
    langs = list(table.columns)
    styles = line_styles([idx[0] for idx in table.index], order=[idx[0] for idx in table.index])
    for idx, row in table.iterrows():  # a distinct style per region; controls drawn lighter
        st = styles[idx[0]]
        ax.plot(langs, row.to_numpy(), marker=st["marker"] or "o", ls=st["ls"], lw=1,
                color="k" if idx[0] == NONE else st["color"], alpha=0.9 if idx[1] != "control" else 0.6,
                label=idx[0])
    ax.set_yscale("log")
    ax.set_ylabel("perplexity")
    ax.set_title("perturbing the core region along one dimension")
    ax.legend(fontsize=7, frameon=False, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig_path = save_fig(fig, ctx.out / "regions_dimensions.png")
    none = table.xs(NONE, level="region").iloc[0]
    med = {kind: float(np.median([(table.loc[i] / none).median() for i in table.index if i[1] == kind]))
           for kind in ("outlier", "control") if any(i[1] == kind for i in table.index)}
    text = (f"Edit: core-region entries along one dimension multiplied by {factor:g} "
            f"({'zeroed' if factor == 0 else 'scaled'}). Outlier dimensions {outliers} (mean |activation| "
            f"×{[round(float(score[d] / score.median()), 1) for d in outliers]} the median dimension); control "
            f"dimensions {controls}. Median over dimensions and languages of perplexity / perplexity without edits: "
            + ", ".join(f"{k} ×{v:.3g}" for k, v in med.items()) + ".")
    shown = table.reset_index()
    shown["region_params"] = shown["region_params"].astype(int)
    for c in langs:
        shown[c] = [f"{v:.3g}" for v in shown[c]]
    ctx.report.section("Dimension dependence of the core region", text, figures=[fig_path], table=shown)
