"""Paper-style figures: layer on the x axis, a line per group, shaded interval, baseline drawn.

Every line of a figure must be told apart, so styles come from one helper, :func:`line_styles`:
a distinct (colour, line style, marker) per series key, assigned once per figure (the same key
has the same style in every panel), in a stable order (the caller's, else sorted). Layer axes
get integer ticks (:func:`integer_layer_axis`).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

# tab10; after ten series the next cycle changes line style and marker together, so a
# (colour, style, marker) triple is never repeated for up to len(COLOURS) * len(_CYCLES) lines
COLOURS = [f"C{i}" for i in range(10)]
_CYCLES = [("-", ""), ((0, (5, 1.5)), "o"), ("-.", "s"), ((0, (1, 1.2)), "^"), ((0, (8, 2, 1, 2, 1, 2)), "D"),
           ((0, (3, 3)), "v"), ("-", "x"), ("-", "P")]
# a baseline is thin, dashed and unmarked, in its line's colour
BASELINE = {"lw": 0.9, "ls": (0, (2, 2)), "alpha": 0.6}


def sorted_keys(keys: Iterable[Hashable]) -> list:
    """Stable order for series or panel keys: numeric when all are numbers, else by text."""
    keys = list(dict.fromkeys(keys))
    try:
        return sorted(keys, key=float)
    except (TypeError, ValueError):
        return sorted(keys, key=str)


def line_styles(keys: Iterable[Hashable], order: Sequence | None = None) -> dict:
    """``{key: {"color", "ls", "marker"}}``, pairwise distinct, in ``order`` (else sorted).

    Keys missing from ``order`` follow it, sorted. Raises when there are more keys than
    distinct styles (80), since such a figure cannot be read anyway."""
    keys = list(dict.fromkeys(keys))
    head = [k for k in (order or []) if k in keys]
    ordered = head + sorted_keys(k for k in keys if k not in head)
    if len(ordered) > len(COLOURS) * len(_CYCLES):
        raise ValueError(f"{len(ordered)} lines in one figure: at most {len(COLOURS) * len(_CYCLES)} can be told "
                         "apart; split the figure (panels) or plot fewer series")
    out = {}
    for i, k in enumerate(ordered):
        ls, marker = _CYCLES[i // len(COLOURS)]
        out[k] = {"color": COLOURS[i % len(COLOURS)], "ls": ls, "marker": marker}
    return out


def integer_layer_axis(ax, axis: str = "x") -> None:
    """Integer ticks on a layer axis (no 2.5, 7.5, ...)."""
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


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
    group_order: Sequence | None = None,
    ylim: tuple[float, float] | None = None,
    ncols: int = 4,
    legend_title: str | None = None,
) -> Path:
    """One panel per value of ``panels`` (or one panel), a line per ``group``, CI shaded.

    ``df`` columns: ``x``, ``value``, optional ``ci_low``/``ci_high`` and ``baseline_col``.
    The baseline (chance or unpaired) is drawn thin and dashed in the line's colour. Each
    group keeps one style across panels; the legend lists every group of every panel, in
    ``group_order`` (else sorted). An ``x`` named ``layer`` gets integer ticks.
    """
    keys = list(panel_order or (sorted_keys(df[panels].unique()) if panels else [None]))
    groups = df[group].astype(object).where(df[group].notna(), "nan")
    styles = line_styles(groups.unique(), group_order)
    df = df.assign(**{group: groups})
    cols = min(ncols, len(keys))
    nrows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.3 * nrows), squeeze=False, sharey=True)
    for ax in axes.flat[len(keys):]:
        ax.set_visible(False)
    handles: dict = {}
    for ax, key in zip(axes.flat, keys):
        sub = df if key is None else df[df[panels] == key]
        present = set(sub[group])
        for g in [k for k in styles if k in present]:
            d = sub[sub[group] == g].sort_values(x)
            st = styles[g]
            n = len(d)
            (line,) = ax.plot(d[x], d["value"], label=str(g), color=st["color"], ls=st["ls"], marker=st["marker"],
                              markersize=3.5, markevery=max(1, n // 8), lw=1.6)
            handles.setdefault(g, line)
            if {"ci_low", "ci_high"} <= set(d.columns) and d["ci_low"].notna().any():
                ax.fill_between(d[x], d["ci_low"], d["ci_high"], color=st["color"], alpha=0.18, lw=0)
            if baseline_col and baseline_col in d.columns and d[baseline_col].notna().any():
                ax.plot(d[x], d[baseline_col], color=st["color"], label=f"_baseline {g}", **BASELINE)
        if hline is not None:
            ax.axhline(hline, color="k", lw=0.8, ls=":")
        ax.set_xlabel(x)
        if x == "layer":
            integer_layer_axis(ax)
        ax.set_title(str(key) if key is not None else title)
        if ylim:
            ax.set_ylim(*ylim)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    if handles:
        order = [g for g in styles if g in handles]
        fig.legend([handles[g] for g in order], [str(g) for g in order], loc="center left",
                   bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False, title=legend_title, title_fontsize=8)
    if title and keys != [None]:
        fig.suptitle(title)
    fig.tight_layout()
    return save_fig(fig, path)
