"""Adding a modality = one module + one config file: a toy adapter outside the package runs
an experiment through config alone."""
import subprocess
import sys

import pandas as pd

from tests_paths import REPO

CONFIG = """\
_target_: toy_modality.ShoutAdapter
phrases: [the cat sleeps, a red apple, the old house, we like music, two small dogs, it rains today]
suffix: "!"
"""


def test_toy_adapter_runs_through_config_alone(tmp_path):
    conf = tmp_path / "conf" / "modality"
    conf.mkdir(parents=True)
    (conf / "shout.yaml").write_text(CONFIG)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "hub.cli", "experiment=similarity", "modality=shout", "model=tiny_llama",
           "progress=false", f"hydra.run.dir={out}", f"hydra.searchpath=[file://{tmp_path / 'conf'}]"]
    # a home of its own: the run's activation cache (and anything else written under ~, e.g.
    # matplotlib's font cache) goes to tmp_path, never into the user's ~/.cache
    home, acts = tmp_path / "home", tmp_path / "activations"
    env = {"PYTHONPATH": f"{REPO / 'tests'}", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(home),
           "XDG_CACHE_HOME": str(home / ".cache"), "SEMANTIC_HUB_CACHE_DIR": str(acts)}
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert list(acts.glob("*/*.safetensors")), "the run's states were cached somewhere else"
    df = pd.read_csv(out / "results.csv")
    assert set(df["modality"]) == {"shout"}
    assert set(df["metric"]) >= {"cos_adjusted", "cka", "retrieval_top1"}
    assert sorted(df["layer"].unique()) == [0, 1, 2, 3]
    assert df["value"].notna().all() and (df["n"] == 6).all()
    assert "Paired similarity" in (out / "report.md").read_text()
