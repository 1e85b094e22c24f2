"""Cross-model comparison of a sweep on relative depth (layer / L): the four-model report.

Models differ in depth (SmolLM2-135M 30 blocks, Gemma-3-270m 18, Qwen2.5-Coder 0.5B 24 and
1.5B 28), so every curve is drawn against ``layer / L`` (L = the job's last layer index, so 0 is
the embedding output and 1 the last block). For each headline metric of each experiment
(:data:`HEADLINE`), one figure with **one line per model** and one panel per value of the
columns that say what a row measures (language, direction, read language, set, mode: never a
mean over them). Tables (Markdown in ``depth.md``, full rows in ``depth_peaks.csv``):

* peaks: per experiment and metric, a row per panel and a column per model: the peak value @
  the relative peak layer (layer/L); crosslingual (11 languages per unit) is summarised per
  unit as the median and range over languages (the CSV keeps every language);
* latent language: per direction and model, the peak of p(target) and of each candidate
  latent language, the layers where each candidate leads the target (materiality rule of
  hub.readings: leading p ≥ ``min_prob``, separated 95% intervals), in layers and relative depth,
  and the intermediate layers where one candidate leads the others (hub.readings.series_leads);
* wall time per model (the sum of its jobs' ``elapsed_s``, model loading included).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hub.readings import DEFAULT_MIN_PROB, compare_curves, layer_ranges, series_leads

# experiment -> headline metrics (rows with a layer); the report draws and tabulates these
HEADLINE: dict[str, list[str]] = {
    "crosslingual": ["retrieval_top1", "cos_adjusted"],
    "latent_language": ["lang_prob"],
    "arithmetic": ["lang_prob", "retrieval_top1"],
    "code": ["lang_prob", "retrieval_top1"],
    "wic": ["accuracy"],
}
# columns that say what a row measures: a panel per combination of those that vary
PANEL_COLS = ("task", "src", "tgt", "lang", "set", "mode", "split", "condition", "lens", "pair")
REL = "relative depth (layer / L)"


def _panel_cols(d: pd.DataFrame) -> list[str]:
    """The identifying columns that split ``d`` further (a column that only renames groups
    already made, like ``pair`` next to ``lang``, is left out)."""
    cols: list[str] = []
    n = 1
    for c in PANEL_COLS:
        if c not in d.columns or d[c].nunique(dropna=True) < 2:
            continue
        m = d.groupby(cols + [c], dropna=False).ngroups
        if m > n or (c == "tgt" and "src" in cols):  # a direction is named by both ends
            cols, n = cols + [c], m
    return cols


def _label(row: pd.Series, cols: list[str]) -> str:
    return " · ".join(f"{c}={row[c]}" for c in cols if pd.notna(row[c])) or "all"


def with_depth(df: pd.DataFrame) -> pd.DataFrame:
    """Rows with a layer, with ``L`` (the job's last layer) and the relative depth column."""
    d = df.assign(layer=pd.to_numeric(df["layer"], errors="coerce"),
                  value=pd.to_numeric(df["value"], errors="coerce"))
    d = d[d["layer"].notna()].copy()
    d["L"] = d.groupby("job")["layer"].transform("max")
    d[REL] = d["layer"] / d["L"].where(d["L"] > 0, 1)
    return d


def curves(df: pd.DataFrame, exp: str, metric: str) -> tuple[pd.DataFrame, int]:
    """One row per (panel, model, layer) of a headline metric: ``panel``, ``model``, ``layer``,
    ``L``, relative depth, ``value`` (and CIs). Returns the table and the most rows merged into
    one point (1: none; more only when a sweep repeats a model with another setting)."""
    d = df[(df["experiment"] == exp) & (df["metric"] == metric)]
    if d.empty:
        return pd.DataFrame(), 1
    cols = _panel_cols(d)
    d = d.assign(panel=d.apply(lambda r: _label(r, cols), axis=1) if cols else "all")
    keys = ["panel", "model", "layer"]
    per = int(d.groupby(keys).size().max())
    agg = {"value": "mean", "L": "first", REL: "first"}
    agg |= {c: "mean" for c in ("ci_low", "ci_high") if c in d.columns and per == 1}
    return d.groupby(keys, as_index=False).agg(agg), per


def peaks(c: pd.DataFrame) -> pd.DataFrame:
    """Per panel and model: peak layer, L, relative peak layer, peak value."""
    idx = c.groupby(["panel", "model"])["value"].idxmax()
    p = c.loc[idx, ["panel", "model", "layer", "L", REL, "value"]]
    return p.rename(columns={"layer": "peak_layer", REL: "peak_rel", "value": "peak_value"}).reset_index(drop=True)


def latent_leads(df: pd.DataFrame, min_prob: float = DEFAULT_MIN_PROB) -> pd.DataFrame:
    """Per direction and model: peak of p(target) and of each candidate, and the material layers
    where each candidate leads the target (separated 95% intervals)."""
    d = df[(df["experiment"] == "latent_language") & (df["metric"] == "lang_prob")]
    if "lens" in d.columns:
        d = d[d["lens"].fillna("logit") == "logit"]
    if d.empty or not {"src", "tgt", "lang", "ci_low", "ci_high"} <= set(d.columns):
        return pd.DataFrame()
    rows = []
    for (model, src, tgt), g in d.groupby(["model", "src", "tgt"], sort=True):
        L = int(g["L"].max())
        by = {lang: s.groupby("layer")[["value", "ci_low", "ci_high"]].mean().sort_index()
              for lang, s in g.groupby("lang")}
        if tgt not in by:
            continue
        t = by[tgt]
        row = {"model": model, "direction": f"{src}→{tgt}", "L": L,
               f"p(tgt) peak": f"{t['value'].max():.3f} @ {t['value'].idxmax() / L:.2f}",
               "p(tgt) last": round(float(t["value"].iloc[-1]), 3)}
        for lang in sorted(k for k in by if k != tgt):
            e = by[lang]
            lead = compare_curves(e, t, min_prob).a
            row[f"p({lang}) peak"] = f"{e['value'].max():.3f} @ {e['value'].idxmax() / L:.2f}"
            row[f"{lang} leads tgt (layers)"] = layer_ranges(lead)
            row[f"{lang} leads tgt (rel)"] = _rel_ranges(lead, L)
        cands = {lang: by[lang] for lang in by if lang != tgt}
        if len(cands) > 1:  # which candidate leads the others (intermediate layers, same rule)
            lead, _ = series_leads(cands, min_prob)
            mid = {c: [k for k in v if 0 < k < L] for c, v in lead.items()}
            row["candidate leading the others (layers)"] = "; ".join(
                f"{c} {layer_ranges(v)}" for c, v in mid.items() if v) or "none"
        rows.append(row)
    return pd.DataFrame(rows)


def _rel_ranges(layers: list[int], L: int) -> str:
    """Layer ranges as relative depths: ``[5, 6, 7, 12]``, L=24 -> ``0.21–0.29, 0.50``."""
    if not layers:
        return "none"
    out = []
    for part in layer_ranges(layers).split(", "):
        a, _, b = part.partition("–")
        out.append(f"{int(a) / L:.2f}" + (f"–{int(b) / L:.2f}" if b else ""))
    return ", ".join(out)


def wall_times(jobs) -> pd.DataFrame:
    """Seconds per model (sum of its done jobs' elapsed_s, model loading included) and jobs."""
    rows = [{"model": j.overrides.get("model", "?"), "experiment": j.experiment, "seconds": j.elapsed_s}
            for j in jobs if j.status == "done" and j.elapsed_s is not None]
    if not rows:
        return pd.DataFrame()
    t = pd.DataFrame(rows).pivot_table(index="model", columns="experiment", values="seconds", aggfunc="sum")
    t["total"] = t.sum(axis=1)
    return t.round(0)


def peak_table(pk: pd.DataFrame, by_unit: bool, models: list[str]) -> pd.DataFrame:
    """Peaks as one row per panel and one column per model, each cell ``value @ relative layer
    (layer/L)``. ``by_unit`` (crosslingual: 11 languages per unit): one row per unit, each cell
    the median and range over its languages of the peak value and of the relative peak layer."""
    if by_unit:
        unit = pk["panel"].str.extract(r"task=(\w+)")[0].fillna("all")

        def cell(g: pd.DataFrame) -> str:
            v, r = g["peak_value"], g["peak_rel"]
            return (f"{v.median():.3f} [{v.min():.3f}–{v.max():.3f}] @ {r.median():.2f} "
                    f"[{r.min():.2f}–{r.max():.2f}] (n={len(g)})")

        t = pk.assign(unit=unit).groupby(["unit", "model"]).apply(cell, include_groups=False).unstack("model")
    else:
        c = pk.apply(lambda r: f"{r['peak_value']:.3f} @ {r['peak_rel']:.2f} ({int(r['peak_layer'])}/{int(r['L'])})",
                     axis=1)
        t = pk.assign(cell=c).pivot(index="panel", columns="model", values="cell")
    return t.reindex(columns=[m for m in models if m in t.columns]).reset_index()


def _md(t: pd.DataFrame) -> str:
    t = t.astype(object).where(t.notna(), "")
    head = "| " + " | ".join(map(str, t.columns)) + " |\n|" + "---|" * len(t.columns)
    body = ["| " + " | ".join(str(v).replace("|", "/") for v in r) + " |" for r in t.itertuples(index=False)]
    return "\n".join([head, *body])


def size_pairs(models: list[str]) -> list[tuple[str, str]]:
    """Models of one family in two sizes (same name up to the last ``_``): ``qwen25_coder_05b``
    and ``qwen25_coder_15b``, in name order (smaller first when sizes are written alike)."""
    fam: dict[str, list[str]] = {}
    for m in sorted(models):
        fam.setdefault(m.rsplit("_", 1)[0], []).append(m)
    return [(v[0], v[-1]) for v in fam.values() if len(v) >= 2]


def compare_sizes(pk: pd.DataFrame, a: str, b: str) -> str:
    """Per headline metric: how often ``b``'s peak is above ``a``'s over the shared panels, the
    median peak values and relative peak layers: "bigger model, cleaner hub?" in numbers."""
    lines = [f"| metric | panels | median peak {a} | median peak {b} | {b} higher in | "
             f"median rel. peak layer {a} | {b} |", "|---|---|---|---|---|---|---|"]
    for (exp, metric), g in pk.groupby(["experiment", "metric"], sort=False):
        w = g.pivot_table(index="panel", columns="model", values=["peak_value", "peak_rel"], aggfunc="first")
        if (("peak_value", a) not in w.columns) or (("peak_value", b) not in w.columns):
            continue
        w = w.dropna()
        va, vb = w[("peak_value", a)], w[("peak_value", b)]
        lines.append(f"| {exp}: {metric} | {len(w)} | {va.median():.3f} | {vb.median():.3f} | "
                     f"{int((vb > va).sum())}/{len(w)} | {w[('peak_rel', a)].median():.2f} | "
                     f"{w[('peak_rel', b)].median():.2f} |")
    return "\n".join(lines)


def build_depth(df: pd.DataFrame, jobs, out: Path, with_figures: bool = True,
                min_prob: float = DEFAULT_MIN_PROB) -> Path | None:
    """Write ``depth.md``, ``depth_peaks.csv`` and ``figures/depth_*.png`` for a sweep over
    several models; None when the sweep has fewer than two models."""
    from hub.plots import layer_curves
    from hub.results import atomic_write_text

    if df.empty or "model" not in df.columns or df["model"].nunique() < 2:
        return None
    d = with_depth(df)
    models = sorted(d["model"].astype(str).unique())
    L = d.groupby("model")["L"].max().astype(int)
    lines = ["# Models compared on relative depth", "",
             "x = layer / L (L = the model's last layer: " + ", ".join(f"{m} {L[m]}" for m in models) + "). "
             "One line per model; one panel per language / direction / read language / set / mode, never a "
             "mean over them. Peak tables: per panel and model (crosslingual: median and range over its "
             "languages per unit; every language in depth_peaks.csv).", ""]
    all_pk = []
    for exp, metrics in HEADLINE.items():
        for metric in metrics:
            c, per = curves(d, exp, metric)
            if c.empty:
                continue
            pk = peaks(c).assign(experiment=exp, metric=metric)
            all_pk.append(pk)
            lines += [f"## {exp}: {metric}", ""]
            if per > 1:
                lines += [f"(each point: mean of {per} rows: the sweep repeats a model with another setting)", ""]
            if with_figures:
                path = out / "figures" / f"depth_{exp}_{metric}.png"
                fig = layer_curves(c, path, group="model", panels="panel", x=REL, ylabel=metric, baseline_col=None,
                                   title=f"{exp}: {metric} by relative depth, one line per model",
                                   group_order=models, ncols=4)
                lines += [f"![{exp} {metric}]({fig.relative_to(out).as_posix()})", ""]
            how = ("median [range] over languages of the peak value @ relative peak layer"
                   if exp == "crosslingual" else "peak value @ relative layer (layer/L)")
            lines += [f"Peaks: {how}.", "", _md(peak_table(pk, exp == "crosslingual", models)), ""]
    lat = latent_leads(d, min_prob)
    if len(lat):
        lines += ["## Which language leads the target (latent_language, logit lens)", "",
                  f"Layers where p(candidate) leads p(target): material (leading p ≥ {min_prob:g}) with separated "
                  "95% intervals (hub/readings.py). `p peak` = value @ relative layer.", "", _md(lat), ""]
    pk = pd.concat(all_pk, ignore_index=True) if all_pk else pd.DataFrame()
    for a, b in size_pairs(models):
        if len(pk):
            lines += [f"## {a} vs {b}: bigger model, cleaner hub?", "", compare_sizes(pk, a, b), ""]
    wt = wall_times(jobs)
    if len(wt):
        lines += ["## Wall time per model (s; sum of its jobs, model loading included)", "",
                  _md(wt.reset_index()), ""]
    if len(pk):
        atomic_write_text(out / "depth_peaks.csv", pk.to_csv(index=False))
    return atomic_write_text(out / "depth.md", "\n".join(lines) + "\n")
