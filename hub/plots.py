"""Paper-style figures: layer on the x axis, a line per group, shaded interval, baseline drawn."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def save_fig(fig, path: str | Path) -> Path:
    """Save atomically (temp file + rename) and close the figure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        plt.close(fig)
    return path


def layer_curves(
    df: pd.DataFrame,
    path: str | Path,
    *,
    group: str = "lang",
    panels: str | None = None,
    x: str = "layer",
    title: str = "",
    ylabel: str = "value",
    baseline_col: str | None = "baseline",
    hline: float | None = None,
    panel_order: Sequence | None = None,
    ylim: tuple[float, float] | None = None,
    ncols: int = 4,
) -> Path:
    """One panel per value of ``panels`` (or one panel), a line per ``group``, CI shaded.

    ``df`` columns: ``x``, ``value``, optional ``ci_low``/``ci_high`` and ``baseline_col``.
    The baseline (chance or unpaired) is drawn dashed in the line's colour.
    """
    keys = list(panel_order or (sorted(df[panels].unique(), key=str) if panels else [None]))
    cols = min(ncols, len(keys))
    nrows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.3 * nrows), squeeze=False, sharey=True)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    for ax, key in zip(axes.flat, keys):
        sub = df if key is None else df[df[panels] == key]
        for gi, (g, d) in enumerate(sorted(sub.groupby(group, dropna=False), key=lambda t: str(t[0]))):
            d = d.sort_values(x)
            color = f"C{gi % 10}"
            ax.plot(d[x], d["value"], label=str(g), color=color, lw=1.6)
            if {"ci_low", "ci_high"} <= set(d.columns) and d["ci_low"].notna().any():
                ax.fill_between(d[x], d["ci_low"], d["ci_high"], color=color, alpha=0.18, lw=0)
            if baseline_col and baseline_col in d.columns and d[baseline_col].notna().any():
                ax.plot(d[x], d[baseline_col], color=color, lw=0.9, ls="--", alpha=0.7)
        if hline is not None:
            ax.axhline(hline, color="k", lw=0.8, ls=":")
        ax.set_xlabel(x)
        ax.set_title(str(key) if key is not None else title)
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    if title and keys != [None]:
        fig.suptitle(title)
    fig.tight_layout()
    return save_fig(fig, path)
