"""The cross-model report on relative depth (hub/depth_report.py; issue 14 §2)."""
from __future__ import annotations

import pandas as pd
import pytest
from helpers import compose_cfg, run_cfg
from omegaconf import OmegaConf

from hub.depth_report import REL, curves, latent_leads, peaks, size_pairs, with_depth
from hub.sweep_report import build, collect, scan_jobs


def _latent_rows(model: str, L: int, en_peak: int) -> list[dict]:
    """fr→de and de→ja: p(en) peaks at ``en_peak`` and leads the target there; p(tgt) wins late."""
    rows = []
    for src, tgt in (("fr", "de"), ("de", "ja")):
        for k in range(L + 1):
            pe = 0.4 if k == en_peak else 0.003
            pt = 0.9 if k == L else 0.001
            for lang, v in (("en", pe), (tgt, pt), ("zh", 0.001)):
                rows.append({"job": model, "experiment": "latent_language", "model": model, "task": "translation",
                             "src": src, "tgt": tgt, "lang": lang, "metric": "lang_prob", "layer": k, "value": v,
                             "ci_low": v - 0.0005, "ci_high": v + 0.0005, "lens": "logit"})
    return rows


@pytest.fixture
def frame():
    # two depths: the peak at layer 2 of 4 and at layer 4 of 8 is the same relative depth 0.5
    return pd.DataFrame(_latent_rows("fam_05b", 4, 2) + _latent_rows("fam_15b", 8, 4))


def test_relative_depth_one_line_per_model_per_panel(frame):
    c, per = curves(with_depth(frame), "latent_language", "lang_prob")
    assert per == 1  # nothing averaged
    # a panel per direction and read language, never their mean
    assert set(c["panel"]) == {f"src={s} · tgt={t} · lang={lang}" for s, t in (("fr", "de"), ("de", "ja"))
                               for lang in ("en", t, "zh")}
    assert (c.groupby("panel")["model"].nunique() == 2).all()
    pk = peaks(c)
    en = pk[pk["panel"] == "src=fr · tgt=de · lang=en"].set_index("model")
    assert en.loc["fam_05b", "peak_layer"] == 2 and en.loc["fam_15b", "peak_layer"] == 4
    assert en["peak_rel"].tolist() == [0.5, 0.5] and set(en["L"]) == {4, 8}
    assert c[REL].between(0, 1).all()


def test_latent_leads_table(frame):
    t = latent_leads(with_depth(frame), min_prob=0.01).set_index(["model", "direction"])
    assert t.loc[("fam_05b", "fr→de"), "en leads tgt (layers)"] == "2"
    assert t.loc[("fam_15b", "de→ja"), "en leads tgt (rel)"] == "0.50"
    # zh at 0.001 never reaches the materiality threshold: it leads nowhere
    assert t.loc[("fam_05b", "fr→de"), "zh leads tgt (layers)"] == "none"
    assert t.loc[("fam_15b", "fr→de"), "p(tgt) last"] == 0.9
    assert t.loc[("fam_05b", "de→ja"), "candidate leading the others (layers)"] == "en 2"


def test_size_pairs():
    assert size_pairs(["gemma3_270m", "qwen25_coder_05b", "qwen25_coder_15b", "smollm2_135m"]) == [
        ("qwen25_coder_05b", "qwen25_coder_15b")]
    assert size_pairs(["a_1b", "b_1b"]) == []


def _job(sweep, num, model, experiment, extra):
    d = sweep / f"{num}_experiment={experiment},model={model}"
    overrides = [f"experiment={experiment}", f"model={model}", *extra]
    run_cfg(overrides, d)
    (d / ".hydra").mkdir()  # what Hydra leaves in a sweep's job dir
    OmegaConf.save(compose_cfg(overrides), d / ".hydra" / "config.yaml")
    (d / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml([f"model={model}", f"experiment={experiment}"]))


def test_two_tiny_model_sweep_writes_the_depth_report(tmp_path):
    sweep = tmp_path / "sweep"
    small = {"scale_latent_language": ["modality.max_items=6", "modality.n_shots=2"]}
    n = 0
    for model in ("tiny_llama", "tiny_gemma3"):
        for exp, extra in small.items():
            _job(sweep, n, model, exp, extra)
            n += 1
    index = build(sweep).read_text(encoding="utf-8")
    assert "[depth.md](depth.md)" in index
    md = (sweep / "depth.md").read_text(encoding="utf-8")
    for section in ("## latent_language: lang_prob", "## Which language leads the target", "## Wall time per model"):
        assert section in md
    # the peak table: a row per panel, a column per model
    assert "| panel | tiny_gemma3 | tiny_llama |" in md
    assert "| src=fr · tgt=de · lang=zh |" in md and "| tiny_llama | de→ja | 3 |" in md
    assert (sweep / "figures" / "depth_latent_language_lang_prob.png").stat().st_size > 0
    pk = pd.read_csv(sweep / "depth_peaks.csv")
    assert set(pk["model"]) == {"tiny_llama", "tiny_gemma3"} and pk["peak_rel"].between(0, 1).all()
    df = collect(scan_jobs(sweep))
    assert len(pk[pk["experiment"] == "latent_language"]) == 2 * 8  # 2 models x (2 + 3 + 3) read languages
    assert df["model"].nunique() == 2


def test_one_model_writes_no_depth_report(tmp_path):
    sweep = tmp_path / "sweep"
    _job(sweep, 0, "tiny_llama", "scale_latent_language", ["modality.max_items=6", "modality.n_shots=2"])
    build(sweep, with_figures=False)
    assert not (sweep / "depth.md").exists()


def test_models_in_memory_keeps_the_most_recent(monkeypatch):
    """A model-by-model sweep in one process holds one model at a time (models_in_memory: 1)."""
    import hub.context as context

    loads = []
    monkeypatch.setattr(context, "_MODEL_CACHE", {})
    monkeypatch.setattr(context, "load_model", lambda path, **kw: loads.append(path) or object())
    cfg = {m: OmegaConf.create({"name": m, "path": m}) for m in ("a", "b")}
    first = context.get_model(cfg["a"], keep=1)
    assert context.get_model(cfg["a"], keep=1) is first and loads == ["a"]  # loaded once
    context.get_model(cfg["b"], keep=1)
    assert list(context._MODEL_CACHE) == [("causal_lm", "b", "float32", "[]", "cpu")]
    context.get_model(cfg["a"], keep=2)
    context.get_model(cfg["b"], keep=2)  # still held: no reload
    assert loads == ["a", "b", "a"] and len(context._MODEL_CACHE) == 2
    context.get_model(cfg["a"], keep=None)
    assert len(context._MODEL_CACHE) == 2
