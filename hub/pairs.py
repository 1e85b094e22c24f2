"""The one paired-comparison path: capture → compare → drop constant layers → ``n_distinct``.

Every similarity experiment (text, arithmetic, code, semantics, image, audio, CLIP towers,
Whisper encoder and decoder) goes through :func:`compare_states` (states it captured itself)
or :func:`compare_paired` (an adapter's :class:`~hub.contract.PairedSet`), so every
results.csv has the same columns and one test decides what a constant layer is.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from hub.contract import PairedSet, Side
from hub.errors import UserError
from hub.metrics import REGISTRY, compare
from hub.models import HubModel
from hub.readings import layer_ranges


def _side_key(side: Side, layers) -> tuple:
    if side.extra is not None:  # per-item tensors: the same Side object, kept alive by the cache entry
        return ("object", id(side), repr(layers))
    pos = side.positions if isinstance(side.positions, str) else repr(side.positions)
    return (tuple(map(str, side.inputs)), pos, repr(side.spans), repr(layers))


def capture_side(hm: HubModel, side: Side, layers: Sequence[int] | str = "all", batch_size: int = 16,
                 progress: bool = False, cache: dict | None = None) -> Tensor:
    """States of one side at its positions: ``[n, layer, d]`` (index positions are averaged).

    ``cache`` (a dict kept by the caller) reuses states of a side seen before in the same run,
    e.g. the English side that every language is compared with, or the image side that every
    caption language is compared with.
    """
    key = _side_key(side, layers) if cache is not None else None
    if key is not None and key in cache:
        return cache[key][0]
    st = hm.capture(side.inputs, layers=layers, positions=side.positions, spans=side.spans,
                    extra=side.extra, batch_size=batch_size, progress=progress)
    if isinstance(st, list):
        raise UserError(f"side {side.label!r}: positions='all' gives per-token states; use 'last', 'mean' or "
                         "indices for paired comparison")
    st = st.mean(2) if st.dim() == 4 else st
    if key is not None:
        cache[key] = (st, side)
    return st


def compare_states(x: Tensor, y: Tensor, metric: Mapping, layers: Sequence[int], seed: int = 0,
                   where: str = "paired states") -> pd.DataFrame:
    """Comparator rows for paired states ``x, y: [n, layer, d]`` whose axis 1 is ``layers``.

    A layer where one side is the same state for every item (e.g. layer 0 at a shared final
    "." token, or a class token before any mixing) has no defined CKA or retrieval: it is left
    out, never NaN, and listed in ``df.attrs["constant_layers"]``. ``n_distinct`` is the
    number of different states a layer holds on its fewer side: few means the read token is
    the same for many items, and the scores there say which items share it, not what they
    mean (the report leaves such layers out of its peaks). A single metric with no value at a
    layer the others score (``metric.undefined=nan``, the default: e.g. debiased CKA where all
    items but one share a state) gets a NaN row here, so one cell does not stop a sweep; the
    run leaves those rows out of results.csv and counts them in its report (:func:`split_undefined`).
    """
    layers = list(layers)
    if x.shape[:2] != y.shape[:2] or x.shape[1] != len(layers):
        raise ValueError(f"{where}: states {tuple(x.shape)} and {tuple(y.shape)} must be [n, layer, d] with "
                         f"the same n and one layer per label in {layers}")
    n = x.shape[0]
    k = min(int(metric["k"]), n - 1)  # mutual k-NN needs k < n; small sets use n - 1
    keep = [j for j in range(len(layers)) if varies(x[:, j]) and varies(y[:, j])]
    if not keep:
        raise UserError(f"{where}: at every layer one side has the same state for all items; nothing to compare "
                         "(read other positions, e.g. positions=mean)")
    df = compare(x[:, keep].transpose(0, 1).float(), y[:, keep].transpose(0, 1).float(),
                 metrics=tuple(metric["names"]), k=k, csls=bool(metric["csls"]), csls_k=int(metric["csls_k"]),
                 n_boot=int(metric["n_boot"]), ci=float(metric["ci"]), seed=seed, clamp=metric.get("clamp"),
                 layers=[layers[j] for j in keep], undefined=metric.get("undefined", "nan"))
    df.attrs["constant_layers"] = [layers[j] for j in range(len(layers)) if j not in keep]
    distinct = {layers[j]: min(n_distinct(x[:, j]), n_distinct(y[:, j])) for j in keep}
    df["n_distinct"] = df["layer"].map(distinct)
    return df


def compare_paired(hm: HubModel, pset: PairedSet, metric: Mapping, layers: Sequence[int] | str = "all",
                   batch_size: int = 16, seed: int = 0, progress: bool = False, cache: dict | None = None
                   ) -> pd.DataFrame:
    """Capture both sides of ``pset`` and compare them per layer; rows carry ``pset.ids`` and ``pair``."""
    layer_list = hm.check_layers(layers)
    x = capture_side(hm, pset.a, layer_list, batch_size, progress, cache)
    y = capture_side(hm, pset.b, layer_list, batch_size, progress, cache)
    df = compare_states(x, y, metric, layer_list, seed=seed, where=f"paired set {pset.name!r}")
    for key, value in pset.ids.items():
        df[key] = value
    df["pair"] = pset.name
    return df


def n_distinct(states: Tensor) -> int:
    """Number of different rows of ``[n, d]`` states (exact equality)."""
    return int(torch.unique(states, dim=0).shape[0])


def varies(states: Tensor, rel: float = 1e-5) -> bool:
    """Do the ``[n, d]`` states differ across items (beyond float noise)?"""
    states = states.float()
    spread = (states - states.mean(0)).norm(dim=-1).max()
    return bool(spread > rel * states.norm(dim=-1).mean().clamp_min(1e-12))


def split_undefined(df: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """(the rows with a value, a paragraph counting the comparator rows left out because their
    metric is undefined there (NaN value), by metric with layers, paired sets and the reason;
    ``None`` when there are none). results.csv never holds a NaN value (hub.results)."""
    if not {"metric", "value", "layer"} <= set(df.columns):
        return df, None
    gone = df["metric"].isin(list(REGISTRY)) & df["value"].isna()
    bad = df[gone]
    if not len(bad):
        return df, None
    unit = next((c for c in ("pair", "lang") if c in bad.columns and bad[c].notna().all()), None)
    parts = []
    for metric, m in bad.groupby("metric", sort=False):
        where = f" ({', '.join(map(str, m[unit].unique()))})" if unit else ""
        layers = sorted(m["layer"].unique().tolist())
        at = layer_ranges(layers) if all(isinstance(v, (int, np.integer)) for v in layers) else ", ".join(map(str, layers))
        parts.append(f"{metric}: {len(m)} at layer(s) {at}{where}: {REGISTRY[metric].undefined}")
    note = (f"{len(bad)} metric value(s) are undefined and left out of results.csv (the other metrics at those "
            "layers are kept): " + "; ".join(parts) + ".")
    return df[~gone].reset_index(drop=True), note
