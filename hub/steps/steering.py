"""Shared pieces of the steering experiments: intervals, effect-vs-scale figures, readings.

Every steering experiment measures a per-unit value (one prompt, one operand triple, ...) at
each (layer, scale) and summarises it as a mean with a percentile-bootstrap interval over
units. Figures put the scale on the x axis, one line per layer, a panel per condition.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from hub.layers import select_layers
from hub.models import HubModel
from hub.plots import layer_curves
from hub.stats import bootstrap_mean_ci


def resolve_layers(hm: HubModel, spec: Sequence[int | float]) -> list[int]:
    """Absolute layers from a config list: ints are layers, floats in (0, 1) fractions of depth
    (hub.layers.select_layers), so one config runs on models of any depth."""
    return select_layers(list(spec), hm.n_layers, hm.name, fractions=True)


def summarise(units: pd.DataFrame, keys: Sequence[str], metrics: Sequence[str], unit: str,
              ci: float = 0.95, n_boot: int = 1000, seed: int = 0, average_over: str | None = "seed"
              ) -> pd.DataFrame:
    """Tidy rows ``keys + metric, value, ci_low, ci_high, n`` from per-unit values.

    Values are first averaged over ``average_over`` (e.g. the seed that picked the vector's
    words) within each unit, then bootstrapped over units; ``seed_sd`` is the spread of the
    per-seed means, so vector-sampling noise is visible next to the interval.
    """
    rows = []
    for key, g in units.groupby(list(keys), dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            if metric not in g.columns or g[metric].isna().all():
                continue
            gg = g.dropna(subset=[metric])
            if average_over and average_over in gg.columns:
                per_unit = gg.groupby(unit)[metric].mean()
                seed_sd = float(gg.groupby(average_over)[metric].mean().std(ddof=0))
            else:
                per_unit, seed_sd = gg[metric], 0.0
            m, lo, hi = map(float, bootstrap_mean_ci(per_unit.to_numpy(), ci, n_boot, seed))
            rows.append({**dict(zip(keys, key)), "metric": metric, "value": m, "ci_low": lo, "ci_high": hi,
                         "n": int(per_unit.size), "seed_sd": seed_sd})
    return pd.DataFrame(rows)


def effect_figure(df: pd.DataFrame, path: str | Path, metric: str, panels: str | None, title: str,
                  ylabel: str, hline: float | None = 0.0, panel_order: Sequence | None = None) -> Path:
    """Effect vs scale, one line per layer (shaded interval), a panel per ``panels`` value."""
    sub = df[df["metric"] == metric].copy()
    sub["layer"] = "layer " + sub["layer"].astype(int).astype(str).str.zfill(2)
    return layer_curves(sub, path, group="layer", panels=panels, x="scale", title=title, ylabel=ylabel,
                        baseline_col=None, hline=hline, panel_order=panel_order)


def best_cell(df: pd.DataFrame, metric: str, sign: int = 1) -> pd.Series | None:
    """The (layer, scale) row with the largest ``sign * value`` among nonzero scales."""
    sub = df[(df["metric"] == metric) & (df["scale"] != 0)]
    if sub.empty:
        return None
    return sub.loc[(sign * sub["value"]).idxmax()]


def describe_cell(row: pd.Series, unit: str = "", fmt: str = "+.2f") -> str:
    """``+1.23 [0.80, 1.60] at layer 6, scale 8 (n=8)``, flagging intervals that cover zero."""
    covers = row["ci_low"] <= 0 <= row["ci_high"]
    return (f"{row['value']:{fmt}}{unit} [{row['ci_low']:{fmt[1:] if fmt.startswith('+') else fmt}}, "
            f"{row['ci_high']:{fmt[1:] if fmt.startswith('+') else fmt}}] at layer {int(row['layer'])}, "
            f"scale {row['scale']:g} (n={int(row['n'])}{'; interval covers 0' if covers else ''})")


def any_effect(df: pd.DataFrame, metric: str) -> bool:
    """True when some nonzero-scale cell has an interval excluding zero."""
    sub = df[(df["metric"] == metric) & (df["scale"] != 0)]
    return bool(((sub["ci_low"] > 0) | (sub["ci_high"] < 0)).any())
