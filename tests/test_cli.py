"""The job runner (resume, error.txt, summary lines), the sweep summary callback and the
cross-run report command, on tiny models and synthetic sweep directories."""
from __future__ import annotations

import os
import shutil

import pandas as pd
import pytest
from helpers import compose_cfg
from omegaconf import OmegaConf

from hub.cli import SweepSummary, run_or_resume
from hub.sweep_report import build, main as report_main, scan_jobs

TINY = ["model=tiny_llama", "experiment=lens_smoke", "progress=false", "cache.enabled=false"]


def test_done_job_is_skipped_and_resume_false_recomputes(tmp_path, capsys):
    cfg = compose_cfg(TINY)
    first = run_or_resume(cfg, tmp_path)
    assert first["status"] == "done" and (tmp_path / "report.md").is_file()
    mtime = (tmp_path / "report.md").stat().st_mtime_ns
    again = run_or_resume(cfg, tmp_path)
    assert again["status"] == "skipped" and (tmp_path / "report.md").stat().st_mtime_ns == mtime
    out = capsys.readouterr().out
    assert "[semantic-hub] done lens_smoke on tiny_llama" in out and "report.md" in out
    assert "[semantic-hub] skip lens_smoke on tiny_llama: already done" in out
    assert run_or_resume(compose_cfg(TINY + ["resume=false"]), tmp_path)["status"] == "done"
    assert (tmp_path / "report.md").stat().st_mtime_ns != mtime


def test_failed_job_writes_error_txt_and_a_rerun_clears_it(tmp_path, capsys):
    bad = compose_cfg(TINY + ["experiment.prompt=' '"])  # an empty prompt is an input error
    with pytest.raises(ValueError, match="empty prompt"):
        run_or_resume(bad, tmp_path)  # a single run re-raises
    res = run_or_resume(bad, tmp_path, raise_errors=False)  # a sweep job reports and goes on
    assert res["status"] == "failed" and res["error"].startswith("UserError")
    err = (tmp_path / "error.txt").read_text()
    assert "lens_smoke on tiny_llama" in err and "Traceback" in err and "empty prompt" in err
    assert not (tmp_path / "report.md").exists()
    assert "[semantic-hub] FAILED lens_smoke on tiny_llama" in capsys.readouterr().out
    (tmp_path / ".results.csv.123.tmp").write_text("half")  # debris of a killed attempt
    assert run_or_resume(compose_cfg(TINY), tmp_path)["status"] == "done"
    assert not (tmp_path / "error.txt").exists() and not list(tmp_path.glob(".*.tmp"))


# ------------------------------------------------------------------------- sweep report
def _job(root, name, overrides, experiment, model, n_layers, status="done", metrics=("cos", "cka")):
    d = root / name
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(overrides))
    (d / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml({"experiment": {"name": experiment}}))
    rows = [{"model": model, "lang": lang, "metric": m, "layer": k, "value": k / n_layers + i, "ci_low": 0.0,
             "ci_high": 1.0, "n": 5} for i, m in enumerate(metrics) for lang in ("de", "fr") for k in range(n_layers + 1)]
    rows.append({"model": model, "metric": "perplexity", "layer": None, "value": 12.0, "n": 5})
    if status != "failed":
        pd.DataFrame(rows).to_csv(d / "results.csv", index=False)
    if status == "done":
        (d / "report.md").write_text("# report\n\n- elapsed_s: 3.5\n")
    if status == "failed":
        (d / "error.txt").write_text("x\nTraceback ...\nValueError: boom\n")
    return d


@pytest.fixture
def sweep(tmp_path):
    s = tmp_path / "multirun"
    _job(s, "0_model=a", ["model=a", "experiment=crosslingual", "hydra.launcher.n_jobs=2"], "crosslingual", "a", 4)
    _job(s, "1_model=b", ["model=b", "experiment=crosslingual"], "crosslingual", "b", 8)
    _job(s, "2_model=c", ["model=c", "experiment=crosslingual"], "crosslingual", "c", 8, status="failed")
    _job(s, "10_model=d", ["model=d", "experiment=crosslingual"], "crosslingual", "d", 8, status="incomplete")
    return s


def test_report_collects_done_jobs_with_overrides_as_columns(sweep):
    index = build(sweep)
    df = pd.read_csv(sweep / "sweep_results.csv")
    assert set(df["job"]) == {"0_model=a", "1_model=b"}  # failed and incomplete jobs are left out
    assert {"job", "experiment", "model", "metric", "layer", "value"} <= set(df.columns)
    assert not any(c.startswith("hydra") for c in df.columns)
    per_job = df.groupby("job").size().to_dict()
    assert per_job == {"0_model=a": 2 * 2 * 5 + 1, "1_model=b": 2 * 2 * 9 + 1}
    assert not df.duplicated(["job", "metric", "lang", "layer"]).any()
    text = index.read_text()
    assert "2 done, 1 failed, 1 incomplete" in text
    assert "[report.md](0_model%3Da/report.md)" in text and "[error.txt](2_model%3Dc/error.txt)" in text
    assert "ValueError: boom" in text
    for m in ("cos", "cka"):
        assert (sweep / "figures" / f"crosslingual_{m}.png").stat().st_size > 0
        assert f"figures/crosslingual_{m}.png" in text
    assert (sweep / "figures" / "crosslingual_summary.png").is_file()  # metrics without a layer


def test_job_order_and_status(sweep):
    jobs = scan_jobs(sweep)
    assert [j.rel for j in jobs] == ["0_model=a", "1_model=b", "2_model=c", "10_model=d"]
    assert [j.status for j in jobs] == ["done", "done", "failed", "incomplete"]
    assert jobs[0].overrides == {"model": "a", "experiment": "crosslingual"} and jobs[0].elapsed_s == 3.5


def test_report_command(sweep, tmp_path, capsys):
    out = tmp_path / "elsewhere"
    assert report_main([str(sweep), "--out", str(out), "--no-figures"]) == 1  # job 2 failed
    assert (out / "index.md").is_file() and (out / "sweep_results.csv").is_file()
    assert "4 jobs (2 done)" in capsys.readouterr().out
    shutil.rmtree(sweep / "2_model=c")  # only done and incomplete jobs left: exit 0
    assert report_main([str(sweep), "--out", str(out), "--no-figures"]) == 0
    assert report_main([str(tmp_path / "nope")]) == 2


def test_sweep_summary_exits_non_zero_when_a_job_failed(sweep, capsys):
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    with pytest.raises(SystemExit) as e:
        SweepSummary(report=True).on_multirun_end(cfg)
    assert e.value.code == 1
    out = capsys.readouterr().out
    assert "4 jobs, 2 done, 1 failed, 1 incomplete" in out and "2_model=c" in out and "index.md" in out
    os.remove(sweep / "2_model=c" / "error.txt")
    _job(sweep, "2_model=c_ok", ["model=c"], "crosslingual", "c", 8)
    SweepSummary(report=False).on_multirun_end(cfg)  # nothing failed: returns normally
