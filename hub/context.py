"""What an experiment gets: its config, output directory, model loader, results and report."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from hub.model import HubModel, load_model
from hub.report import Report
from hub.results import tidy, write_results

_MODEL_CACHE: dict[tuple, HubModel] = {}


def get_model(model_cfg: DictConfig, device: str = "cpu") -> HubModel:
    """Load (once per process) the model a config names."""
    key = (str(model_cfg.path), str(model_cfg.dtype), device)
    if key not in _MODEL_CACHE:
        hm = load_model(str(model_cfg.path), dtype=str(model_cfg.dtype), device=device)
        hm.name = str(model_cfg.name)
        _MODEL_CACHE[key] = hm
    return _MODEL_CACHE[key]


@dataclass
class RunContext:
    """Per-job state: results rows accumulate here and are written once, atomically."""

    cfg: DictConfig
    out: Path
    frames: list[pd.DataFrame] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.report = Report(self.out, title=f"semantic-hub: {self.cfg.experiment.name} on {self.cfg.model.name}")

    @property
    def model(self) -> HubModel:
        return get_model(self.cfg.model, self.cfg.get("device", "cpu"))

    def add(self, df: pd.DataFrame, **ids) -> pd.DataFrame:
        """Add result rows; ``model`` is filled in from the config."""
        ids.setdefault("model", self.cfg.model.name)
        t = tidy(df, **ids)
        self.frames.append(t)
        return t

    def results(self) -> pd.DataFrame:
        return pd.concat(self.frames, ignore_index=True) if self.frames else tidy([])

    def finish(self) -> Path:
        """Write results.csv then report.md (the report last: its presence marks a finished job)."""
        df = self.results()
        if len(df):
            write_results(df, self.out / "results.csv")
        self.report.meta["elapsed_s"] = round(time.time() - self.started, 1)
        return self.report.write()
