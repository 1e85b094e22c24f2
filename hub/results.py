"""Tidy long results tables, written atomically; never a silent NaN.

Every run writes ``results.csv`` with at least ``metric, layer, value, ci_low, ci_high, n``
plus identifying columns (``model, modality, task, src, tgt, lang`` ...). Writes go to a
temporary file that is renamed into place, so a half-written table is never read as done.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED = ("metric", "layer", "value", "ci_low", "ci_high", "n")
ID_COLUMNS = ("model", "modality", "task", "src", "tgt", "lang")


def tidy(rows: Iterable[Mapping] | pd.DataFrame, **ids) -> pd.DataFrame:
    """Rows (or a frame) plus constant identifying columns, in a stable column order."""
    df = rows.copy() if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    for k, v in ids.items():
        df[k] = v
    for c in REQUIRED:
        if c not in df.columns:
            df[c] = np.nan if c in ("ci_low", "ci_high") else None
    first = [c for c in ID_COLUMNS if c in df.columns] + list(REQUIRED)
    return df[first + [c for c in df.columns if c not in first]]


def validate(df: pd.DataFrame, where: str = "results") -> None:
    """Raise if required columns are missing or ``value`` has NaN/inf."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{where}: missing columns {missing}; required {list(REQUIRED)}")
    bad = ~np.isfinite(pd.to_numeric(df["value"], errors="coerce").to_numpy(dtype=float))
    if bad.any():
        sample = df.loc[bad, ["metric", "layer"]].head(5).to_dict("records")
        raise ValueError(f"{where}: {int(bad.sum())} non-finite values, e.g. {sample}")


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text to ``path`` via a temp file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_results(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Validate and atomically write a results table as CSV."""
    validate(df, str(path))
    return atomic_write_text(path, df.to_csv(index=False))


def read_results(path: str | os.PathLike) -> pd.DataFrame:
    df = pd.read_csv(path)
    validate(df, str(path))
    return df
