"""Short factual readings of result tables, for report.md (numbers, not adjectives)."""
from __future__ import annotations

import pandas as pd

from hub.readings import (DEFAULT_MIN_PROB, compare_curves, curve, layer_ranges, leads_text, pattern_reading,
                          rule_text, series_leads)

_ranges = layer_ranges


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
            curve = m.groupby("layer")["value"].mean().dropna()  # NaN: undefined everywhere there
            if not len(curve):
                continue
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


def latent_reading(df: pd.DataFrame, tgt: str, latent: str, min_prob: float = DEFAULT_MIN_PROB,
                   state_rule: bool = True) -> str:
    """Peaks and last layer of p(latent) and p(tgt); the material layers each leads (separated
    95% intervals, materiality rule of hub.readings); and whether that is the pattern Wendler
    et al. report, or that it does not appear. ``state_rule``: end with the rule's sentence
    (off when the caller states it once for several readings)."""
    t, e = curve(df, tgt), curve(df, latent)
    leads = compare_curves(e, t, min_prob)
    last = leads.layers[-1]
    pk = int(e["value"].idxmax())
    return (f"p({latent}) peaks at {e.loc[pk, 'value']:.3f} in layer {pk}; p({tgt}) reaches "
            f"{t['value'].max():.3f} (layer {int(t['value'].idxmax())}). At the last layer p({tgt}) = "
            f"{t.loc[last, 'value']:.3f} and p({latent}) = {e.loc[last, 'value']:.3f}. "
            + leads_text(leads, f"p({latent})", f"p({tgt})") + " "
            + pattern_reading(leads, latent, tgt) + (" " + rule_text(min_prob) if state_rule else ""))


def candidates_reading(df: pd.DataFrame, tgt: str, cands: list[str], min_prob: float = DEFAULT_MIN_PROB) -> str:
    """Which candidate latent language leads the intermediate layers (0 < layer < last): at each
    layer the candidate with the largest p, when material and its interval is above every other
    candidate's (hub.readings.series_leads); and which candidates lead the target there."""
    curves = {c: curve(df, c) for c in cands}
    leads, low = series_leads(curves, min_prob)
    layers = sorted(set.intersection(*(set(int(k) for k in c.index) for c in curves.values())))
    mid = {c: [k for k in leads[c] if layers[0] < k < layers[-1]] for c in cands}
    t = curve(df, tgt)
    over_t = {c: [k for k in compare_curves(curves[c], t, min_prob).a if layers[0] < k < layers[-1]] for c in cands}
    parts = [f"p({c}) leads the other candidates at intermediate layers {layer_ranges(mid[c])} "
             f"(and leads p({tgt}) at {layer_ranges(over_t[c])})" for c in cands]
    counts = {c: len(v) for c, v in mid.items()}
    best = max(cands, key=lambda c: counts[c])
    if counts[best] == 0:
        verdict = (f"No candidate ({', '.join(cands)}) leads the others at a material intermediate layer "
                   f"(p ≥ {min_prob:g}, separated 95% intervals).")
    elif sum(v == counts[best] for v in counts.values()) > 1:
        verdict = f"Candidates tie: {', '.join(f'{c} {n}' for c, n in counts.items())} material intermediate layers led."
    else:
        verdict = (f"**{best}** leads the most material intermediate layers among the candidates "
                   f"({counts[best]} of {max(len(layers) - 2, 0)}; "
                   + ", ".join(f"{c}: {n}" for c, n in counts.items() if c != best) + ").")
    extra = [f"{c} at {layer_ranges(v)}" for c, v in low.items() if v]
    note = f" Not counted (leading p < {min_prob:g}): {'; '.join(extra)}." if extra else ""
    return f"Candidates {', '.join(cands)}: " + "; ".join(parts) + ". " + verdict + note
