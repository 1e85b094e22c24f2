"""Figures a reader can trust: every line told apart, integer layer ticks, stable legends, and
cross-run figures that never average over an identifying column (read back from the Axes)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from omegaconf import OmegaConf

import hub.plots
from hub.plots import layer_curves, line_styles
from hub.sweep_report import build


@pytest.fixture
def figs(monkeypatch):
    """Every figure saved through hub.plots.save_fig, kept for inspection."""
    kept, save = [], hub.plots.save_fig

    def keep(fig, path):
        kept.append(fig)
        return save(fig, path)

    monkeypatch.setattr(hub.plots, "save_fig", keep)
    return kept


def _lines(ax) -> dict:
    """label -> Line2D for the data lines of an Axes (baselines have '_' labels)."""
    return {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}


def _style(ln) -> tuple:
    """(colour, line style, marker) as drawn."""
    return to_hex(ln.get_color()), str(ln.get_linestyle()), str(ln.get_marker())


def _curves(groups, layers=range(4), panels=None) -> pd.DataFrame:
    rows = []
    for i, g in enumerate(groups):
        for k in layers:
            rows.append({"lang": g, "layer": k, "value": 0.1 * i + 0.01 * k, "ci_low": 0.1 * i,
                         "ci_high": 0.1 * i + 0.05, "baseline": 0.0, "panel": panels[i % len(panels)] if panels else None})
    return pd.DataFrame(rows)


def test_thirteen_lines_have_distinct_styles(tmp_path, figs):
    langs = ["ar", "de", "en", "es", "fr", "hi", "it", "ja", "ko", "pt", "ru", "sw", "zh"]
    layer_curves(_curves(langs), tmp_path / "f.png")
    ax = figs[-1].axes[0]
    lines = _lines(ax)
    assert sorted(lines) == langs
    styles = {lab: _style(ln) for lab, ln in lines.items()}
    assert len(set(styles.values())) == len(langs), styles
    assert styles["ar"] != styles["zh"]  # the demo's ar and zh were the same blue
    legend = figs[-1].legends[0]
    assert [t.get_text() for t in legend.get_texts()] == langs  # sorted, stable


def test_line_styles_are_unique_ordered_and_bounded():
    st = line_styles([f"g{i}" for i in range(80)])
    assert len({(s["color"], str(s["ls"]), s["marker"]) for s in st.values()}) == 80
    assert list(line_styles(["b", "a", "c"], order=["c"])) == ["c", "a", "b"]
    assert list(line_styles([10, 2, 1])) == [1, 2, 10]  # numbers sort as numbers
    with pytest.raises(ValueError, match="81 lines"):
        line_styles(range(81))


def test_layer_axis_has_integer_ticks(tmp_path, figs):
    layer_curves(_curves(["de", "fr"], layers=range(4)), tmp_path / "f.png")  # default ticks would be 0.5 apart
    ax = figs[-1].axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


def test_same_group_same_style_in_every_panel_and_legend_lists_all(tmp_path, figs):
    df = _curves(["de", "en", "fr", "zh"], panels=["p1", "p2"])  # p1: de, fr; p2: en, zh
    layer_curves(df, tmp_path / "f.png", panels="panel")
    a1, a2 = figs[-1].axes[:2]
    seen = {**_lines(a1), **_lines(a2)}
    assert set(_lines(a1)) == {"de", "fr"} and set(_lines(a2)) == {"en", "zh"}
    assert len({_style(ln) for ln in seen.values()}) == 4
    legend = figs[-1].legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["de", "en", "fr", "zh"]
    for h, t in zip(legend.legend_handles, legend.get_texts()):
        assert h.get_color() == seen[t.get_text()].get_color()


# ---------------------------------------------------------------- sweep report, synthetic
P = {("translation", "fr", "en"): 0.30, ("translation", "fr", "zh"): 0.05, ("translation", "de", "en"): 0.25,
     ("translation", "de", "zh"): 0.08, ("repetition", "fr", "en"): 0.02, ("repetition", "fr", "zh"): 0.60,
     ("repetition", "de", "en"): 0.03, ("repetition", "de", "zh"): 0.55}


def _latent_sweep(root):
    for i, (task, src) in enumerate([(t, s) for t in ("translation", "repetition") for s in ("fr", "de")]):
        d = root / f"{i}_src={src},task={task}"
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(
            [f"task={task}", f"src={src}", "tgt=zh", "experiment=latent_language"]))
        (d / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml({"experiment": {"name": "latent_language"}}))
        rows = [{"metric": "lang_prob", "lang": lang, "layer": k, "value": P[task, src, lang] * (1 + k / 10),
                 "ci_low": 0.0, "ci_high": 1.0, "n": 8, "task": task, "src": src, "tgt": "zh"}
                for lang in ("en", "zh") for k in range(6)]
        rows += [{"metric": "entropy", "layer": k, "value": 5.0 - k, "n": 8, "task": task, "src": src, "tgt": "zh"}
                 for k in range(6)]
        pd.DataFrame(rows).to_csv(d / "results.csv", index=False)
        (d / "report.md").write_text("# report\n")


def test_sweep_figure_never_averages_languages(tmp_path, figs):
    _latent_sweep(tmp_path)
    build(tmp_path)
    fig = next(f for f in figs if "lang_prob" in (f._suptitle.get_text() if f._suptitle else ""))
    assert "mean" not in fig._suptitle.get_text()
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(panels) == {"repetition", "translation"}
    for task, ax in panels.items():
        lines = _lines(ax)
        assert set(lines) == {f"src={s} · lang={lang}" for s in ("de", "fr") for lang in ("en", "zh")}
        for label, ln in lines.items():
            src, lang = label.removeprefix("src=").split(" · lang=")
            want = P[task, src, lang] * (1 + np.arange(6) / 10)
            assert np.allclose(ln.get_ydata(), want), (task, label)  # the job's own curve, not a mean
        assert all(float(t).is_integer() for t in ax.get_xticks())
    legend = fig.legends[0]
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == 4 and not any("task=" in t for t in texts)  # the panel names the task
    for h, t in zip(legend.legend_handles, texts):  # the legend's style is that line's style in both panels
        for ax in panels.values():
            ln = _lines(ax)[t]
            assert _style(h) == _style(ln)


def test_latent_language_run_figures_and_reading(tmp_path, figs):
    """End to end on a tiny model: integer layer ticks on every layer axis, the rule stated,
    probability intervals inside [0, 1]."""
    from helpers import run_cfg

    report = run_cfg(["experiment=latent_language", "model=tiny_llama", "cache.enabled=false",
                      "reading.min_prob=0.02"], tmp_path)
    layer_axes = [ax for f in figs for ax in f.axes if ax.get_visible() and ax.get_xlabel() == "layer"]
    assert len(layer_axes) >= 3
    for ax in layer_axes:
        lo, hi = ax.get_xlim()
        assert all(float(t).is_integer() for t in ax.get_xticks() if lo <= t <= hi)
    assert "leading probability is ≥ 0.02 (reading.min_prob)" in report.read_text()
    df = pd.read_csv(tmp_path / "results.csv")
    p = df[df["metric"] == "lang_prob"]
    assert (p["ci_low"] >= 0).all() and (p["ci_high"] <= 1).all() and (p["ci_low"] <= p["value"]).all()
