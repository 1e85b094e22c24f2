"""Sweeps through real Hydra launchers: joblib (local parallel processes), Ray (a local Ray
instance started by the launcher) and submitit/SLURM (composed and submitted up to the sbatch
call, whose script and job parameters are checked: no cluster needed)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from tests_paths import REPO

from hub.cli import CONF_DIR

TINY = ["model=tiny_llama", "experiment=lens_smoke", "progress=false", "cache.enabled=false"]


def _cli() -> list[str]:
    exe = Path(sys.executable).with_name("semantic-hub")
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "hub.cli"]


def _run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(_cli() + args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _compose_hydra(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def test_local_joblib_launcher_config_composes() -> None:
    launcher = _compose_hydra(["hydra/launcher=local", *TINY]).hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert launcher.n_jobs == 2 and launcher.prefer == "processes"


def test_ray_launcher_config_composes() -> None:
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    launcher = _compose_hydra(["hydra/launcher=ray_local", *TINY]).hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
    assert launcher.ray.init.address is None and launcher.ray.remote.num_cpus == 1


@pytest.mark.slow
def test_joblib_parallel_sweep_keeps_results_of_jobs_that_did_not_fail(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    r = _run(["-m", "hydra/launcher=local", "hydra.launcher.n_jobs=2", *TINY,
              "model.path='tiny:llama','tiny:no_such_family'", f"hydra.sweep.dir={sweep}"])
    out = r.stdout + r.stderr
    assert r.returncode == 1, out[-3000:]  # one job failed: the sweep says so at the end
    assert "Joblib.Parallel(n_jobs=2" in out
    good, bad = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())
    assert (good / "report.md").is_file() and (good / "results.csv").is_file()
    assert "tiny:no_such_family: no such tiny model" in (bad / "error.txt").read_text() and not (bad / "report.md").exists()
    assert "1 done, 1 failed" in out and str(bad / "error.txt") in out
    table = pd.read_csv(sweep / "sweep_results.csv")
    assert set(table["job"]) == {good.name} and (sweep / "index.md").is_file()


@pytest.mark.slow
def test_ray_launcher_runs_a_two_job_sweep_on_a_local_ray_instance(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    pytest.importorskip("hydra_plugins.hydra_ray_launcher.ray_launcher")
    sweep = tmp_path / "sweep"
    r = _run(["-m", "hydra/launcher=ray_local", "hydra.launcher.ray.init.num_cpus=2", *TINY, "seed=0,1",
              f"hydra.sweep.dir={sweep}"])
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "Ray Launcher is launching 2 jobs" in out
    reports = sorted(sweep.glob("*/report.md"))
    assert len(reports) == 2
    table = pd.read_csv(sweep / "sweep_results.csv")
    assert sorted(table["seed"].unique().tolist()) == [0, 1]


# ----------------------------------------------------------------------------- SLURM
SLURM = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=4",
         "hydra.launcher.mem_gb=8", "hydra.launcher.timeout_min=30", "hydra.launcher.array_parallelism=2"]


def test_slurm_launcher_config_composes() -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = _compose_hydra([*SLURM, *TINY]).hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.cpus_per_task, launcher.mem_gb, launcher.timeout_min) == ("debug", 4, 8, 30)
    assert launcher.max_num_timeout >= 1 and launcher.nodes == 1 and launcher.tasks_per_node == 1
    assert "export OMP_NUM_THREADS=4" in list(launcher.setup)
    assert str(launcher.submitit_folder).endswith(".submitit/%j")


class _Submitted(Exception):
    """Raised instead of calling sbatch."""


def test_slurm_sweep_is_submitted_as_one_array_with_the_job_parameters(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from submitit.core.utils import DelayedSubmission
    from submitit.slurm.slurm import SlurmExecutor

    import hub.cli

    seen: dict = {}

    def no_sbatch(self, path):
        seen["sbatch"] = Path(path).read_text()
        raise _Submitted

    monkeypatch.setattr(SlurmExecutor, "_make_submission_command", no_sbatch)
    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # as if srun were there
    sweep = tmp_path / "sweep"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        with pytest.raises(_Submitted):
            GlobalHydra.instance().hydra.multirun(
                config_name="config", task_function=hub.cli._hydra_main,
                overrides=[*SLURM, *TINY, "seed=0,1", f"hydra.sweep.dir={sweep}"], with_log_configuration=False)
    sbatch = seen["sbatch"]
    for line in ("#SBATCH --partition=debug", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=8GB",
                 "#SBATCH --time=30", "#SBATCH --array=0-1%2", "#SBATCH --nodes=1", "#SBATCH --ntasks-per-node=1",
                 "export OMP_NUM_THREADS=4", "submitit.core._submit"):
        assert line in sbatch, f"{line!r} not in the sbatch script:\n{sbatch}"
    assert f"#SBATCH --output={sweep}/.submitit/%A_%a/" in sbatch  # logs beside the sweep
    pickles = sorted((sweep / ".submitit").rglob("*.pkl"))
    jobs = [DelayedSubmission.load(p).args for p in pickles]
    assert len(jobs) == 2
    assert sorted(next(o for o in args[0] if o.startswith("seed=")) for args in jobs) == ["seed=0", "seed=1"]
    assert all("model=tiny_llama" in args[0] and args[1] == "hydra.sweep.dir" for args in jobs)
