"""Resume: kill -9 a multirun halfway, run the same sweep again, and only the missing jobs
run; no duplicate rows, no half-written files. The first run is a real `semantic-hub -m`
subprocess killed with a real SIGKILL; the rerun is the same multirun through Hydra in this
process (same overrides, same task function as the CLI; saves a second interpreter start)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from tests_paths import REPO

N_JOBS = 6


def _overrides(sweep: Path) -> list[str]:
    return ["model=tiny_llama", "experiment=lens_smoke", f"seed={','.join(map(str, range(N_JOBS)))}",
            "progress=false", "cache.enabled=false", f"hydra.sweep.dir={sweep}"]


def _command(sweep: Path) -> list[str]:
    exe = Path(sys.executable).with_name("semantic-hub")
    return ([str(exe)] if exe.is_file() else [sys.executable, "-m", "hub.cli"]) + ["-m", *_overrides(sweep)]


def _rerun_in_process(sweep: Path) -> None:
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import hub.cli

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(hub.cli.CONF_DIR), version_base="1.3"):
        GlobalHydra.instance().hydra.multirun(config_name="config", task_function=hub.cli._hydra_main,
                                              overrides=_overrides(sweep), with_log_configuration=False)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def _done(sweep: Path) -> list[Path]:
    return sorted(sweep.glob("*/report.md"))


def test_killed_multirun_completes_only_missing_jobs(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(_command(sweep), cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + 240
        while len(_done(sweep)) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9, mid-sweep
    finally:
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()[-3000:]
    before = {p.parent.name: p.stat().st_mtime_ns for p in _done(sweep)}
    assert 2 <= len(before) < N_JOBS, f"the kill should land halfway; done: {sorted(before)}"

    _rerun_in_process(sweep)  # raises SystemExit(1) if a job failed
    out = capsys.readouterr().out
    assert out.count("[semantic-hub] skip ") == len(before)
    assert out.count("[semantic-hub] done ") == N_JOBS - len(before)
    after = {p.parent.name: p.stat().st_mtime_ns for p in _done(sweep)}
    assert len(after) == N_JOBS
    assert all(after[k] == v for k, v in before.items()), "finished jobs must not run again"

    assert not [p for p in sweep.rglob("*") if p.name.endswith(".tmp")], "no temp files left behind"
    table = pd.read_csv(sweep / "sweep_results.csv")  # written by the sweep summary at the end
    per_job = [len(pd.read_csv(p.parent / "results.csv")) for p in _done(sweep)]
    assert len(table) == sum(per_job) and table["job"].nunique() == N_JOBS
    assert not table.duplicated(["job", "metric", "layer"]).any()
    assert sorted(table["seed"].unique().tolist()) == list(range(N_JOBS))
