"""Compose the app's config in tests (the same conf/ the CLI uses)."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

import hub.cli  # noqa: F401  (registers the pkg_data resolver)
from hub.cli import CONF_DIR, run_job


def compose_cfg(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def run_cfg(overrides: list[str], out: Path) -> Path:
    """Compose and run one job into ``out`` (no Hydra run dir), returning report.md."""
    return run_job(compose_cfg(overrides + ["progress=false"]), out)
