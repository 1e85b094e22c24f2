"""Ablating linguistic regions (Zhang et al. 2024, Sec. 3).

Method. For every language we take the scoring part of its text and accumulate the importance
|θ ⊙ ∂loss/∂θ| of each entry of the matrices inside the decoder blocks (a bounded number of
tokens per language, fp32, no optimizer step). The *core* region is the top k (1%) per matrix
of the importance summed over languages; a language's *monolingual* region is its own top k
minus every other language's top k. Controls: the *bottom* k of the summed importance and a
*random* k per matrix. We then zero one region at a time (restoring the weights bit-for-bit
afterwards) and measure each language's perplexity on its held-out evaluation text, windows
of fixed token length, with a t-interval over windows.

Expected (a check, not a target): zeroing the core region raises perplexity in every language
far more than zeroing a bottom or random 1%; zeroing a monolingual region hurts mostly its own
language.
"""
from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from hub.context import RunContext
from hub.plots import save_fig
from hub.regions import MONO_PREFIX, NONE, ablate
from hub.steps.regions import eval_rows, get_regions, load_splits, wants_mono


def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg, ctx.model
    scoring, held_out = load_splits(cfg)
    regions = get_regions(ctx, hm, scoring, mono=wants_mono(cfg.experiment.regions))
    names = regions.resolve(list(cfg.experiment.regions))
    rows = []
    for name in names:
        mask = regions[name]
        t0 = time.time()
        with ablate(hm, mask):
            got = eval_rows(hm, held_out, cfg, region=name, region_params=mask.count(),
                            region_fraction=mask.fraction())
        rows += got
        print(f"[regions_ablation] {name}: {time.time() - t0:.0f}s, median ppl "
              f"{np.median([r['value'] for r in got]):.3g}", flush=True)
    df = ctx.add(pd.DataFrame(rows), task="ablation")
    report(ctx, df, regions.meta)
    return df


def ppl_table(df: pd.DataFrame) -> pd.DataFrame:
    """Region x language perplexity."""
    t = df.pivot_table(index="region", columns="lang", values="value", sort=False)
    return t[list(dict.fromkeys(df["lang"]))]


def summary(table: pd.DataFrame) -> dict[str, float]:
    """Median over languages of ppl(region) / ppl(none), per region; mono: own vs others."""
    out = {}
    if NONE not in table.index:
        return out
    ratio = table / table.loc[NONE]
    for r in table.index:
        if not r.startswith(MONO_PREFIX):
            out[r] = float(ratio.loc[r].median())
    mono = [r for r in table.index if r.startswith(MONO_PREFIX) and r[len(MONO_PREFIX):] in table.columns]
    if mono:
        own = [ratio.loc[r, r[len(MONO_PREFIX):]] for r in mono]
        other = [ratio.loc[r, c] for r in mono for c in table.columns if c != r[len(MONO_PREFIX):]]
        out["mono (own language)"] = float(np.median(own))
        out["mono (other languages)"] = float(np.median(other))
    return out


def figures(ctx: RunContext, table: pd.DataFrame) -> list:
    import matplotlib.pyplot as plt

    figs = []
    controls = [r for r in table.index if not r.startswith(MONO_PREFIX)]
    langs = list(table.columns)
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(langs) + 2), 3.6))
    width = 0.8 / max(len(controls), 1)
    x = np.arange(len(langs))
    for i, r in enumerate(controls):
        ax.bar(x + (i - (len(controls) - 1) / 2) * width, table.loc[r].to_numpy(), width, label=r, color=f"C{i}")
    ax.set_yscale("log")
    ax.set_xticks(x, langs)
    ax.set_ylabel("perplexity (log scale)")
    ax.set_title(f"{ctx.cfg.model.name}: perplexity after zeroing a region (k={ctx.cfg.experiment.k})")
    ax.legend(fontsize=8, frameon=False, ncol=len(controls))
    ax.grid(axis="y", alpha=0.3)
    figs.append(save_fig(fig, ctx.out / "regions_ablation.png"))
    mono = [r for r in table.index if r.startswith(MONO_PREFIX)]
    if mono and NONE in table.index:
        ratio = np.log10(table.loc[mono] / table.loc[NONE])
        fig, ax = plt.subplots(figsize=(0.55 * len(langs) + 2.5, 0.45 * len(mono) + 1.8))
        vmax = max(float(np.abs(ratio.to_numpy()).max()), 1e-3)
        im = ax.imshow(ratio.to_numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_xticks(range(len(langs)), langs)
        ax.set_yticks(range(len(mono)), mono)
        ax.set_xlabel("evaluated language")
        ax.set_title("log10 perplexity ratio vs. no ablation")
        fig.colorbar(im, ax=ax, shrink=0.8)
        figs.append(save_fig(fig, ctx.out / "regions_mono.png"))
    return figs


def report(ctx: RunContext, df: pd.DataFrame, meta: dict) -> None:
    table = ppl_table(df)
    figs = figures(ctx, table)
    s = summary(table)
    lines = [f"- {r}: ×{v:.3g}" for r, v in s.items()]
    worst_core = ""
    if {"core", NONE} <= set(table.index):
        ratio = table.loc["core"] / table.loc[NONE]
        ctrl = [r for r in ("random", "bottom") if r in table.index]
        beats = [bool((table.loc["core"] > 10 * table.loc[c]).all()) for c in ctrl]
        worst_core = (f"\n\nCore ablation raises perplexity by ×{ratio.min():.3g} (least, {ratio.idxmin()}) to "
                      f"×{ratio.max():.3g} (most, {ratio.idxmax()}). In every language it is more than 10× the "
                      f"perplexity after ablating the {', '.join(ctrl)} control(s): "
                      f"{'yes' if beats and all(beats) else 'no'}.")
    tokens = meta.get("tokens", {})
    text = (f"Regions: top/bottom/random k={meta['k']} per matrix of {meta['identity']['n_params']:,} parameters "
            f"(matrices inside the decoder blocks unless configured otherwise); importance = |θ ⊙ grad| "
            f"(reduce={meta.get('reduce')}) on {min(tokens.values()) if tokens else '?'}–"
            f"{max(tokens.values()) if tokens else '?'} scoring tokens per language. Perplexity on held-out text: "
            f"windows of {ctx.cfg.experiment.window} tokens, up to {ctx.cfg.experiment.eval_tokens} tokens per "
            f"language; intervals in results.csv are 95% t-intervals over windows.\n\n"
            f"Median over languages of perplexity / perplexity without ablation:\n\n" + "\n".join(lines) + worst_core)
    shown = table.copy()
    shown.insert(0, "params", [int(df[df.region == r]["region_params"].iloc[0]) for r in shown.index])
    shown = shown.reset_index()
    for c in shown.columns[2:]:
        shown[c] = [_fmt(v) for v in shown[c]]
    ctx.report.section("Perplexity after zeroing linguistic regions", text, figures=figs, table=shown)


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    return f"{v:.3g}" if v < 1e4 else f"{v:.2e}"
