"""What an experiment gets: its config, output directory, model loader, results and report.

The model comes from a per-process cache (one load per model per process, also across the jobs
of a sweep run in one process) and gets the activation cache the config asks for
(``cache.enabled``, ``cache.dir``; see hub.cache).
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from hub.cache import ActivationCache, from_config
from hub.models import HubModel, load_model
from hub.models.clip import ClipModel
from hub.pairs import split_undefined
from hub.report import Report
from hub.results import tidy, write_results

# model config keys passed to the loader when set (hub/models/causal_lm.py; README "Big models")
BIG_MODEL_OPTIONS = ("states_dtype", "device_map", "max_memory", "offload_folder")
_MODEL_CACHE: dict[tuple, HubModel | ClipModel] = {}


def get_model(model_cfg: DictConfig, device: str = "cpu", keep: int | None = None) -> HubModel | ClipModel:
    """Load (once per process) the model a config names; ``model.kind`` picks the loader
    (the kind table in hub/models/kinds.py). Experiments take it from ``ctx.model``.
    ``keep``: at most this many models stay in memory (the least recently used go first, so a
    sweep over several big models, run model by model, holds one at a time); None: all."""
    kind = str(model_cfg.get("kind", "causal_lm"))
    path, dtype = str(model_cfg.path), str(model_cfg.get("dtype", "float32"))
    options = {k: model_cfg.get(k) for k in ("pretrained", *BIG_MODEL_OPTIONS) if model_cfg.get(k) is not None}
    for k in ("device_map", "max_memory"):  # explicit maps arrive as DictConfig
        if isinstance(options.get(k), DictConfig):
            options[k] = OmegaConf.to_container(options[k])
    key = (kind, path, dtype, repr(sorted(options.items())), device)
    if key in _MODEL_CACHE:
        _MODEL_CACHE[key] = _MODEL_CACHE.pop(key)  # most recently used last
    else:
        while keep is not None and _MODEL_CACHE and len(_MODEL_CACHE) >= max(int(keep), 1):
            _MODEL_CACHE.pop(next(iter(_MODEL_CACHE)))
            gc.collect()
        _MODEL_CACHE[key] = load_model(path, kind=kind, dtype=dtype, device=device, name=str(model_cfg.name),
                                       **options)
    return _MODEL_CACHE[key]


@dataclass
class RunContext:
    """Per-job state: results rows accumulate here and are written once, atomically."""

    cfg: DictConfig
    out: Path
    frames: list[pd.DataFrame] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    cache: ActivationCache | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.report = Report(self.out, title=f"semantic-hub: {self.cfg.experiment.name} on {self.cfg.model.name}")
        if self.cache is None:
            self.cache = from_config(self.cfg)

    @property
    def model(self) -> HubModel | ClipModel:
        """The configured model of any kind, with this run's activation cache attached (or none)."""
        hm = get_model(self.cfg.model, self.cfg.get("device", "cpu"), keep=self.cfg.get("models_in_memory"))
        hm.cache = self.cache
        return hm

    def add(self, df: pd.DataFrame, **ids) -> pd.DataFrame:
        """Add result rows; ``model`` is filled in from the config."""
        ids.setdefault("model", self.cfg.model.name)
        t = tidy(df, **ids)
        self.frames.append(t)
        return t

    def results(self) -> pd.DataFrame:
        return pd.concat(self.frames, ignore_index=True) if self.frames else tidy([])

    def finish(self) -> Path:
        """Write results.csv then report.md (the report last: its presence marks a finished job).
        Comparator rows whose metric is undefined (NaN) are left out of results.csv and counted
        in the report."""
        df, note = split_undefined(self.results())
        if note:
            self.report.section("Undefined metric values", note)
        if len(df):
            write_results(df, self.out / "results.csv")
        else:  # a table left by an interrupted earlier attempt is not this run's result
            (self.out / "results.csv").unlink(missing_ok=True)
        self.report.meta["elapsed_s"] = round(time.time() - self.started, 1)
        if self.cache is not None:
            self.report.meta["activation cache"] = f"{self.cache.stats} ({self.cache.root})"
            for hm in _MODEL_CACHE.values():  # detach: later users of the model opt in themselves
                if hm.cache is self.cache:
                    hm.cache = None
        return self.report.write()
