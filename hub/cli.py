"""The ``semantic-hub`` Hydra application: compose conf/, run one experiment per job.

``semantic-hub --cfg job`` prints the composed config; ``-m`` runs a sweep, each job in its
own directory. An experiment is a module in ``experiments/`` with ``run(ctx) -> None``.
"""
from __future__ import annotations

import importlib
import logging
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
DATA_DIR = Path(__file__).resolve().parents[1] / "modalities" / "data"
log = logging.getLogger("semantic_hub")


def _pkg_data(name: str) -> str:
    return str(DATA_DIR / name)


if not OmegaConf.has_resolver("pkg_data"):
    OmegaConf.register_new_resolver("pkg_data", _pkg_data)


def run_job(cfg: DictConfig, out: str | Path) -> Path:
    """Run the configured experiment into ``out``; returns the report path."""
    from hub.context import RunContext

    script = cfg.experiment.script
    try:
        module = importlib.import_module(script)
    except ModuleNotFoundError as e:
        raise ValueError(f"experiment.script={script!r} cannot be imported ({e}); "
                         f"expected a module such as experiments.crosslingual") from e
    if not hasattr(module, "run"):
        raise ValueError(f"experiment module {script!r} has no run(ctx) function")
    ctx = RunContext(cfg, Path(out))
    t0 = time.time()
    module.run(ctx)
    report = ctx.finish()
    n = len(ctx.results())
    print(f"[semantic-hub] {cfg.experiment.name} on {cfg.model.name}: {n} result rows in "
          f"{time.time() - t0:.1f}s -> {report}", flush=True)
    return report


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    out = HydraConfig.get().runtime.output_dir
    run_job(cfg, out)


def main() -> None:
    if not CONF_DIR.is_dir():
        sys.exit(f"semantic-hub: config directory {CONF_DIR} not found; install the project editable "
                 "(pip install -e .) from a clone of the repository")
    _hydra_main()


if __name__ == "__main__":
    main()
