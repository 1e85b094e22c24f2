"""Resume's "done" marker: a job is done when its report.md exists, and report.md is written
after results.csv. So a job killed between the two (results.csv there, report.md not) is rerun,
not skipped, and a sweep report counts it as incomplete, never as done."""
from __future__ import annotations

import pandas as pd
import pytest
from helpers import compose_cfg

import hub.context
import hub.report
from hub.cli import run_or_resume
from hub.sweep_report import scan_jobs

TINY = ["model=tiny_llama", "experiment=lens_smoke", "progress=false"]


def test_report_is_written_after_results(tmp_path, monkeypatch):
    order = []
    write_results, write_report = hub.context.write_results, hub.report.Report.write

    def results(df, path):
        order.append("results.csv")
        return write_results(df, path)

    def report(self):
        assert (self.out / "results.csv").is_file(), "report.md (the done marker) before results.csv"
        order.append("report.md")
        return write_report(self)

    monkeypatch.setattr(hub.context, "write_results", results)
    monkeypatch.setattr(hub.report.Report, "write", report)
    assert run_or_resume(compose_cfg(TINY), tmp_path)["status"] == "done"
    assert order == ["results.csv", "report.md"]


def test_a_job_killed_before_its_report_is_rerun(tmp_path, monkeypatch):
    """Killed after results.csv, before report.md: not done, rerun; then done and skipped."""
    def killed(self):
        raise KeyboardInterrupt  # the process dies while writing the report

    with monkeypatch.context() as m:
        m.setattr(hub.report.Report, "write", killed)
        with pytest.raises(KeyboardInterrupt):
            run_or_resume(compose_cfg(TINY), tmp_path / "sweep" / "0_job")
    job = tmp_path / "sweep" / "0_job"
    assert (job / "results.csv").is_file() and not (job / "report.md").exists()
    stale = pd.read_csv(job / "results.csv")
    (job / "results.csv").write_text(stale.assign(value=-1.0).to_csv(index=False))  # mark the stale table
    (job / ".hydra").mkdir()  # as in a Hydra sweep: how scan_jobs finds a job without a marker
    (j,) = scan_jobs(tmp_path / "sweep")
    assert j.status == "incomplete"
    again = run_or_resume(compose_cfg(TINY), job)
    assert again["status"] == "done", "a job without report.md was taken as done"
    assert (job / "report.md").is_file()
    fresh = pd.read_csv(job / "results.csv")
    pd.testing.assert_frame_equal(fresh, stale)  # recomputed, the stale table replaced
    (j,) = scan_jobs(tmp_path / "sweep")
    assert j.status == "done"
    assert run_or_resume(compose_cfg(TINY), job)["status"] == "skipped"
