"""Language-specific neurons (LAPE, Tang et al. 2024).

Method. For every MLP neuron (the activation-function output; hub/neurons.py says which
tensor per family) we count, in one pass over the scoring part of each language's text, how
often it is > 0 on that language's tokens: its activation probability p_l. Normalising p over
languages and taking the entropy, the language-specific neurons are the lowest-entropy fraction
(``bottom_fraction``, 1%) whose top probability passes the threshold (the 95th percentile of
all probabilities unless given); each is assigned to every language where p_l passes the
threshold. We then zero one language's neurons at a time, and, as a control, as many random
neurons per layer, and measure held-out perplexity in every language (the perplexity path of
the linguistic-region experiments). The paper finds that a language's own perplexity is hurt
far more than the others', and that the neurons sit mostly in the first and last layers.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch

from hub.context import RunContext
from hub.errors import UserError
from hub.neurons import (
    deactivated,
    firing_counts,
    lape_select,
    load_neurons,
    save_neurons,
)
from hub.neuron_regions import neuron_overlap, region_neuron_share
from hub.perplexity import token_windows
from hub.plots import layer_curves, save_fig
from hub.regions import MONO_PREFIX, RegionSet, region_identity, select_parameters
from hub.steps.regions import eval_rows, load_splits


def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg, ctx.model
    e = cfg.experiment
    scoring, held_out = load_splits(cfg)
    langs = list(scoring)
    ident = {k: str(v) for k, v in region_identity(hm, select_parameters(hm)).items()}
    t0 = time.time()
    counts, n_tok = {}, {}
    for lang in langs:
        wins = token_windows(hm, scoring[lang], int(e.window), int(e.tokens), name=f"language {lang!r}")
        counts[lang], n_tok[lang] = firing_counts(hm, wins, int(e.batch_size))
    count_s = time.time() - t0
    probs = torch.stack([counts[lang].double() / n_tok[lang] for lang in langs])  # [langs, L, n]
    if e.neurons_file:
        masks = load_neurons(e.neurons_file, expect=ident)
        from safetensors import safe_open

        with safe_open(str(e.neurons_file), "pt") as f:  # the threshold the neurons were selected with
            thr = float((f.metadata() or {}).get("threshold", "nan"))
    else:
        sel, _, thr = lape_select(probs, float(e.bottom_fraction), e.threshold, float(e.threshold_quantile))
        masks = {lang: sel[i] for i, lang in enumerate(langs)}
        save_neurons(ctx.out / "neurons.safetensors", masks, {**ident, "threshold": f"{thr:.6g}"})
    L, n = probs.shape[1:]
    rows = [{"metric": "n_neurons", "layer": k + 1, "lang": lang, "value": int(masks[lang][k].sum()), "n": n}
            for lang in langs for k in range(L)]
    rng = torch.Generator().manual_seed(int(cfg.seed))
    sets = {"none": torch.zeros(L, n, dtype=torch.bool)}
    for lang in langs:
        sets[lang] = masks[lang]
        sets[f"random~{lang}"] = _random_like(masks[lang], rng)
    for name, mask in sets.items():
        if name != "none" and not mask.any():
            continue
        with deactivated(hm, mask):
            rows += eval_rows(hm, held_out, cfg, deactivated=name, n_off=int(mask.sum()))
    if e.get("regions_file"):
        rows += _region_rows(hm, masks, RegionSet.load(e.regions_file, hm))
    df = ctx.add(pd.DataFrame(rows), task="lape")
    _report(ctx, df, langs, n_tok, count_s, thr, L)
    if e.get("regions_file"):
        _overlap_report(ctx, df, e.regions_file)
    return df


def _region_rows(hm, masks: dict, rs: RegionSet) -> list[dict]:
    """Overlap of each language's neurons with each monolingual region and the core (hub/neuron_regions.py)."""
    if not rs.mono():
        raise UserError("experiment.regions_file has no monolingual regions: expected a file from regions_ablation "
                        "run with experiment.regions including mono")
    rows = []
    for region in [*rs.mono(), "core"]:
        share = region_neuron_share(hm, rs[region])  # [L, n]
        for lang, mask in masks.items():
            o = neuron_overlap(mask, share)
            for metric in ("overlap", "enrichment"):
                if not np.isfinite(o[metric]):  # no neurons for this language (or an empty region): no row
                    continue
                rows.append({"metric": f"region_{metric}", "lang": lang, "region": region, "value": o[metric],
                             "chance": o["chance"] if metric == "overlap" else 1.0, "n": o["n_neurons"]})
    return rows


def _overlap_report(ctx: RunContext, df: pd.DataFrame, path) -> None:
    lines = [f"Regions from {path}. A neuron owns its gate row, up row and down column; a region's share of a "
             "neuron is the fraction of those entries inside it. *Overlap*: "
             "the fraction of a language's LAPE neurons N that are among the region's |N| "
             "highest-share neurons (chance = |N| / all neurons). *Enrichment*: "
             "the region's mean share over the LAPE neurons / over all neurons (1 = chance)."]
    tables = {}
    for metric in ("overlap", "enrichment"):
        t = df[df["metric"] == f"region_{metric}"].pivot_table(index="lang", columns="region", values="value",
                                                                 sort=False)
        tables[metric] = t
        mono = [c for c in t.columns if c.startswith(MONO_PREFIX) and c[len(MONO_PREFIX):] in t.index]
        diag = [t.at[c[len(MONO_PREFIX):], c] for c in mono]
        off = [t.at[r, c] for c in mono for r in t.index if r != c[len(MONO_PREFIX):]]
        if diag:
            lines.append(f"- {metric}: own language's monolingual region median {np.nanmedian(diag):.3g} "
                         f"(per language: " + ", ".join(f"{c[len(MONO_PREFIX):]} {v:.3g}" for c, v in zip(mono, diag))
                         + f"); other languages' regions median {np.nanmedian(off) if off else float('nan'):.3g}; "
                         f"core median {np.nanmedian(t['core']):.3g}")
    chance = df[df["metric"] == "region_overlap"].groupby("lang")["chance"].first()
    lines.append("- overlap chance level per language: " + ", ".join(f"{k} {v:.2g}" for k, v in chance.items()))
    ctx.report.section("LAPE neurons vs monolingual regions", "\n".join(lines),
                       table=tables["overlap"].round(3).reset_index())


def _random_like(mask: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """As many random neurons per layer as ``mask`` has (the control)."""
    out = torch.zeros_like(mask)
    for k in range(mask.shape[0]):
        m = int(mask[k].sum())
        if m:
            out[k, torch.randperm(mask.shape[1], generator=rng)[:m]] = True
    return out


def _report(ctx: RunContext, df: pd.DataFrame, langs, n_tok, count_s: float, thr: float, L: int) -> None:
    ppl = df[df["metric"] == "perplexity"].pivot_table(index="deactivated", columns="lang", values="value")
    base = ppl.loc["none"]
    ratio = ppl.drop(index="none") / base  # rows: deactivated set, cols: evaluated language
    own = [lang for lang in langs if lang in ratio.index]
    fig_path = ctx.out / "lape_ppl_ratio.png"
    _heatmap(ratio.loc[own, langs], fig_path)
    counts = df[df["metric"] == "n_neurons"]
    prof = layer_curves(counts, ctx.out / "lape_layer_profile.png", group="lang", baseline_col=None,
                        title="language-specific neurons per layer", ylabel="neurons")
    per_layer = counts.groupby("layer")["value"].sum()
    third = max(1, L // 3)
    edge = per_layer[(per_layer.index <= third) | (per_layer.index > L - third)].sum() / max(per_layer.sum(), 1)
    lines = [f"Firing counts: {sum(n_tok.values())} tokens in {count_s:.0f} s "
             f"({1000 * count_s / max(sum(n_tok.values()), 1):.2f} s per 1k tokens). Threshold {thr:.3g}; "
             f"{int(per_layer.sum())} language-neuron assignments; {edge:.0%} of them in the first or last "
             f"third of the layers (a third of the layers holds {1 / 3:.0%} of the neurons)."]
    for lang in own:
        r = ratio.loc[lang]
        others = r.drop(lang)
        ctrl = ratio.loc[f"random~{lang}"] if f"random~{lang}" in ratio.index else None
        lines.append(f"- off {lang}: own ppl ×{r[lang]:.2f}, others median ×{others.median():.2f} "
                     f"(max ×{others.max():.2f} {others.idxmax()})"
                     + (f"; random control own ×{ctrl[lang]:.2f}" if ctrl is not None else ""))
    hurt_most = sum(ratio.loc[lang].idxmax() == lang for lang in own)
    lines.append(f"Own language hurt most in {hurt_most}/{len(own)} languages.")
    ctx.report.section("Language-specific neurons (LAPE)", "\n".join(lines), figures=[fig_path, prof],
                       table=ratio.loc[own, langs].reset_index())


def _heatmap(t: pd.DataFrame, path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.55 * t.shape[1] + 2, 0.45 * t.shape[0] + 1.5))
    if t.empty:  # no language has specific neurons: say so instead of drawing an empty image
        ax.text(0.5, 0.5, "no language has specific neurons", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        save_fig(fig, path)
        return
    z = np.log2(t.to_numpy(dtype=float))
    top = float(np.nanmax(z))
    im = ax.imshow(z, cmap="Reds", vmin=0, vmax=max(top, 0.1))  # vmax > 0 even if nothing is hurt
    ax.set_xticks(range(t.shape[1]), t.columns)
    ax.set_yticks(range(t.shape[0]), [f"off {x}" for x in t.index])
    ax.set_xlabel("evaluated language")
    for i in range(t.shape[0]):
        for j in range(t.shape[1]):
            ax.text(j, i, f"{t.iat[i, j]:.2g}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="log2 perplexity ratio")
    ax.set_title("perplexity after / before deactivating a language's neurons")
    save_fig(fig, path)
