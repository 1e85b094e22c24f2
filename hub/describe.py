"""Short factual readings of result tables, for report.md (numbers, not adjectives)."""
from __future__ import annotations

import pandas as pd


def _ranges(layers: list[int]) -> str:
    if not layers:
        return "none"
    out, start, prev = [], layers[0], layers[0]
    for k in layers[1:] + [None]:
        if k is not None and k == prev + 1:
            prev = k
            continue
        out.append(f"{start}" if start == prev else f"{start}–{prev}")
        if k is not None:
            start = prev = k
    return ", ".join(out)


def similarity_reading(df: pd.DataFrame) -> str:
    """Per unit and metric: mean over pairs at layer 0, the peak and the last layer, and how
    many pairs beat their baseline (interval above it) at the peak layer.

    A layer where some pair has at most half as many different states as items (column
    ``n_distinct``: the read token is shared, e.g. every sentence's final "." at layer 0) is
    left out of the peak and named in a note: its scores group items by that token."""
    lines = []
    group = "lang" if "lang" in df.columns and df["lang"].notna().all() else "pair"
    units = df["task"].dropna().unique() if "task" in df.columns else [None]
    notes = []
    for unit in units:
        sub = df if unit is None else df[df["task"] == unit]
        few: list[int] = []
        if "n_distinct" in sub.columns and sub["n_distinct"].notna().any():
            ratio = (sub["n_distinct"] / sub["n"]).groupby(sub["layer"]).min()
            few = sorted(int(k) for k in ratio.index[ratio <= 0.5])
            if few:
                worst = sub[sub["layer"].isin(few)]
                notes.append(f"{unit or 'all'}: at layer(s) {_ranges(few)} some pairs hold as few as "
                             f"{int(worst['n_distinct'].min())} different states for {int(worst['n'].max())} items "
                             "(the read token is shared), so their scores group items by that token; those layers "
                             "are left out of the peak.")
        rows = []
        for metric, m in sub.groupby("metric", sort=False):
            curve = m.groupby("layer")["value"].mean()
            base = m.groupby("layer")["baseline"].mean() if "baseline" in m else None
            eligible = curve.drop(index=[k for k in few if k in curve.index])
            peak = int((eligible if len(eligible) else curve).idxmax())
            first, last = int(curve.index.min()), int(curve.index.max())
            at_peak = m[m["layer"] == peak]
            above = int((at_peak["ci_low"] > at_peak["baseline"]).sum()) if "baseline" in at_peak else 0
            mark = "*" if first in few else ""
            rows.append(f"| {metric} | {curve[first]:.3f}{mark} | {curve[peak]:.3f} (layer {peak}) | {curve[last]:.3f} | "
                        f"{(base[peak] if base is not None else float('nan')):.3f} | {above}/{at_peak[group].nunique()} |")
        head = (f"**{unit}**\n\n" if unit is not None else "") + \
            "| metric | layer 0 | peak (layer) | last layer | baseline at peak | pairs above baseline at peak |\n" \
            "|---|---|---|---|---|---|"
        lines.append(head + "\n" + "\n".join(rows))
    lines.append("Values are means over the paired sets (a line each in the figures); 'above baseline' counts "
                 "pairs whose interval lies above their baseline at the peak layer.")
    if notes:
        lines.append("Few distinct states (* in the table): " + " ".join(notes))
    return "\n\n".join(lines)


def latent_reading(df: pd.DataFrame, tgt: str, latent: str) -> str:
    """Where the latent language beats the target (intervals separated), and who wins at the end."""
    p = df[df["metric"] == "lang_prob"]
    t = p[p["lang"] == tgt].set_index("layer").sort_index()
    e = p[p["lang"] == latent].set_index("layer").sort_index()
    layers = list(t.index)
    latent_wins = [k for k in layers if e.loc[k, "ci_low"] > t.loc[k, "ci_high"]]
    target_wins = [k for k in layers if t.loc[k, "ci_low"] > e.loc[k, "ci_high"]]
    last = layers[-1]
    pk = int(e["value"].idxmax())
    s = (f"p({latent}) peaks at {e.loc[pk, 'value']:.3f} in layer {pk}; p({tgt}) reaches "
         f"{t['value'].max():.3f} (layer {int(t['value'].idxmax())}). At the last layer p({tgt}) = "
         f"{t.loc[last, 'value']:.3f} and p({latent}) = {e.loc[last, 'value']:.3f}. "
         f"Layers where p({latent}) > p({tgt}) with separated 95% intervals: {_ranges(latent_wins)}; "
         f"where p({tgt}) > p({latent}): {_ranges(target_wins)}.")
    mid = [k for k in layers if 0 < k < last]
    if latent_wins and any(k in mid for k in latent_wins) and last in target_wins:
        s += (f" This is the pattern Wendler et al. report: {latent} dominates some intermediate layers and "
              f"{tgt} wins only at the end.")
    elif last in target_wins:
        s += f" {tgt} wins at the last layer, but {latent} never clearly dominates an intermediate layer."
    else:
        s += f" {tgt} does not clearly win at the last layer on this model and prompt set."
    return s
