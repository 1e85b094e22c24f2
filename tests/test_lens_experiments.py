"""The ``lens=`` group in every lens experiment besides latent_language (test_lens_config.py):
running_text, arithmetic, code, image_lens and whisper_lens.

A run with two lenses writes rows for both, tagged by a ``lens`` column; its logit rows are
exactly the rows of a logit-only run (a lens choice never leaks into another lens's reading);
at the last layer the patchscope (k' = k = L) reads the model's own output as the logit lens
does, below it the readings differ; the report has one reading per lens. A lens that cannot
apply (the patchscope on Whisper's decoder) and an unknown lens are one user-error line.
"""
from __future__ import annotations

import sys

import pandas as pd
import pytest
import torch
from helpers import compose_cfg, run_cfg

from hub import cli
from hub.errors import UserError
from hub.lens import LENSES, LogitLens, register_lens
from hub.steps.lenses import configured_lenses, lens_label, lens_series, per_lens, per_lens_text
from hub.models.tiny import tiny_model

FAST = ["cache.enabled=false", "metric.n_boot=10"]
# (experiment, tiny model, size overrides, probability metric, report words of the two-lens run)
RUNS = [
    ("running_text", "tiny_llama", ["experiment.languages=[de,zh]", "experiment.max_words=30"], "lang_prob",
     ["| de | logit | 30 |", "| de | patchscope | 30 |", "| zh | patchscope | 30 |", "the first 30 usable words"]),
    ("arithmetic", "tiny_llama", ["modality.n_items=12", "modality.languages=[en,zh]",
                                  "modality.lens_languages=[en,zh]", "modality.lens_items=30"], "lang_prob",
     ["Arithmetic: logit and patchscope lenses on c=a op", "**logit lens.**", "**patchscope lens.**"]),
    ("code", "tiny_llama", ["modality.languages=[en,fr]", "modality.lens_items=20"], "lang_prob",
     ["Code: logit and patchscope lenses at list commas", "patchscope lens: top tokens (p)", "**patchscope lens.**"]),
    ("image_lens", "tiny_gemma3_vlm", ["experiment.lens_langs=[en]", "modality.kinds=[colour,word]"], "noun_prob",
     ["Logit and patchscope lenses at image positions", "**logit lens.**", "**patchscope lens.**"]),
]


@register_lens("test_half")
class HalfLens(LogitLens):
    """A layer-dependent test lens: the logit lens of half the state (a different reading)."""

    needs_layers = True

    def transform(self, states, layers=None):
        return states * 0.5


def _results(out) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv")


def _key(df: pd.DataFrame) -> list[str]:
    """The columns that name a curve point of these rows (those they fill), layer last."""
    return [c for c in ("task", "metric", "set", "lang", "src", "condition", "layer")
            if c in df.columns and df[c].notna().all()]


@pytest.mark.slow
@pytest.mark.parametrize("experiment, model, extra, metric, words", RUNS, ids=[r[0] for r in RUNS])
def test_two_lenses_write_both_and_leave_the_logit_rows_alone(experiment, model, extra, metric, words, tmp_path):
    base = [f"experiment={experiment}", f"model={model}", *FAST, *extra]
    run_cfg(base, tmp_path / "logit")
    report = run_cfg(base + ["lens=[logit,patchscope]"], tmp_path / "both")
    one, both = _results(tmp_path / "logit"), _results(tmp_path / "both")
    assert set(one["lens"].dropna()) == {"logit"}
    assert list(both["lens"].dropna().unique()) == ["logit", "patchscope"]
    # the logit rows (and the rows of no lens, e.g. similarity) are the logit-only run's rows, exactly
    pd.testing.assert_frame_equal(both[both["lens"] != "patchscope"].reset_index(drop=True), one)
    # patchscope rows: one per logit row of the lens readout, a different reading below the last layer,
    # the model's own output (the logit lens's reading) at the last layer
    rows = both[both["metric"] == metric]
    p = rows.pivot_table(index=_key(rows), columns="lens", values="value")
    assert p.notna().all().all() and len(p) == (one["metric"] == metric).sum()
    last = p.index.get_level_values("layer").max()
    torch.testing.assert_close(torch.tensor(p.xs(last, level="layer").to_numpy()[:, 1]),
                               torch.tensor(p.xs(last, level="layer").to_numpy()[:, 0]), atol=1e-6, rtol=0)
    below = p.drop(index=last, level="layer")
    assert (below["patchscope"] != below["logit"]).any()
    text = report.read_text()
    for w in words:
        assert w in text, w


@pytest.mark.slow
def test_whisper_lens_reads_under_each_lens_and_refuses_the_patchscope(tmp_path):
    base = ["experiment=whisper_lens", "model=tiny_whisper", "modality.max_items=4", "modality.languages=[en,de]",
            *FAST]
    run_cfg(base, tmp_path / "logit")
    report = run_cfg(base + ["+lens.test_half={}"], tmp_path / "both")  # logit (default) + a registered test lens
    one, both = _results(tmp_path / "logit"), _results(tmp_path / "both")
    assert list(both["lens"].unique()) == ["logit", "test_half"]
    pd.testing.assert_frame_equal(both[both["lens"] == "logit"].reset_index(drop=True), one)
    half = both[both["lens"] == "test_half"].reset_index(drop=True)
    assert len(half) == len(one) and not half["value"].equals(one["value"])
    text = report.read_text()
    assert "Whisper decoder logit and test_half lenses" in text and "**test_half lens.**" in text
    with pytest.raises(UserError, match="lens=patchscope does not apply to whisper_lens: .*Whisper's decoder has "
                                        r"no forward without audio.*expected one of \[.*'logit'"):
        run_cfg(base + ["lens=[logit,patchscope]"], tmp_path / "refused")
    assert not (tmp_path / "refused" / "results.csv").exists()


def _main(argv: list[str], monkeypatch, capfd) -> tuple[int, list[str]]:
    monkeypatch.setattr(sys, "argv", ["semantic-hub", *argv])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as e:
        cli.main()
    return e.value.code, capfd.readouterr().err.splitlines()


@pytest.mark.parametrize("argv, words", [
    (["experiment=running_text", "lens=nosuch"], ["Could not find 'lens/nosuch'", "logit", "patchscope"]),
    (["experiment=arithmetic", "lens=[logit,nosuch]"], ["Could not load 'lens/nosuch'"]),
    (["experiment=code", "+lens.nosuch={}"], ["lens='nosuch': unknown lens", "'logit'", "'patchscope'"]),
    (["experiment=whisper_lens", "model=tiny_whisper", "lens=patchscope"], ["does not apply to whisper_lens"]),
], ids=["unknown group option", "unknown in a list", "unregistered lens", "patchscope on whisper"])
def test_a_bad_lens_is_one_error_line(argv, words, tmp_path, monkeypatch, capfd):
    out = tmp_path / "out"
    code, lines = _main(["model=tiny_llama", "progress=false", "cache.enabled=false", *argv, f"hydra.run.dir={out}"],
                        monkeypatch, capfd)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("semantic-hub: error: "), lines
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert not (out / "results.csv").exists()


def test_configured_lenses_refuse_by_name_before_building():
    hm = tiny_model("llama")
    cfg = compose_cfg(["lens=[logit,patchscope]"])
    assert list(configured_lenses(cfg, hm, experiment="x")) == ["logit", "patchscope"]
    with pytest.raises(UserError, match=r"lens=patchscope does not apply to x: no text\b"):
        configured_lenses(cfg, hm, experiment="x", refuse={"patchscope": "no text"})
    assert "patchscope" in LENSES  # refusing is per experiment, the registry is untouched


def test_per_lens_series_and_readings_keep_lenses_apart():
    lenses = {"logit": object(), "patchscope": object()}
    frame = pd.DataFrame({"set": ["a", "b"], "layer": [0, 0], "value": [0.1, 0.2]})
    df = per_lens(lenses, lambda name, _: frame.assign(value=frame["value"] + (name == "patchscope")))
    assert df["lens"].tolist() == ["logit", "logit", "patchscope", "patchscope"]
    assert df["value"].tolist() == [0.1, 0.2, 1.1, 1.2]
    s, order = lens_series(df, "set", order=["b", "a"])
    assert s["series"].tolist() == ["a · logit lens", "b · logit lens", "a · patchscope lens", "b · patchscope lens"]
    assert order == ["b · logit lens", "a · logit lens", "b · patchscope lens", "a · patchscope lens"]
    one, order1 = lens_series(df[df["lens"] == "logit"], "set")
    assert one["series"].tolist() == ["a", "b"] and order1 is None  # a one-lens figure keeps its labels
    text = per_lens_text(df, lambda d, n: f"{n}: {d['value'].sum():.1f}")
    assert text == "**logit lens.** logit: 0.3\n\n**patchscope lens.** patchscope: 2.3"
    assert lens_label(["logit"]) == "logit lens"
    assert lens_label(["logit", "tuned", "patchscope"]) == "logit, tuned and patchscope lenses"
