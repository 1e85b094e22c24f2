"""Capture both sides of an adapter's paired set and compare them per layer."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import torch
from torch import Tensor

from hub.compare import compare
from hub.errors import UserError
from hub.models import HubModel
from modalities.base import PairedSet, Side


def _side_key(side: Side, layers) -> tuple | None:
    if side.extra is not None:
        return None
    pos = side.positions if isinstance(side.positions, str) else repr(side.positions)
    return (tuple(map(str, side.inputs)), pos, repr(side.spans), repr(layers))


def capture_side(hm: HubModel, side: Side, layers: Sequence[int] | str = "all", batch_size: int = 16,
                 progress: bool = False, cache: dict | None = None) -> Tensor:
    """States of one side at its positions: ``[n, layer, d]`` (index positions are averaged).

    ``cache`` (a dict kept by the caller) reuses states of a side seen before in the same run,
    e.g. the English side that every language is compared with.
    """
    key = _side_key(side, layers) if cache is not None else None
    if key is not None and key in cache:
        return cache[key]
    st = hm.capture(side.inputs, layers=layers, positions=side.positions, spans=side.spans,
                    extra=side.extra, batch_size=batch_size, progress=progress)
    if isinstance(st, list):
        raise UserError(f"side {side.label!r}: positions='all' gives per-token states; use 'last', 'mean' or "
                         "indices for paired comparison")
    st = st.mean(2) if st.dim() == 4 else st
    if key is not None:
        cache[key] = st
    return st


def compare_paired(hm: HubModel, pset: PairedSet, metric: Mapping, layers: Sequence[int] | str = "all",
                   batch_size: int = 16, seed: int = 0, progress: bool = False, cache: dict | None = None
                   ) -> pd.DataFrame:
    """Per-layer comparator rows for one paired set, with its identifying columns."""
    layer_list = hm.check_layers(layers)
    x = capture_side(hm, pset.a, layer_list, batch_size, progress, cache)
    y = capture_side(hm, pset.b, layer_list, batch_size, progress, cache)
    n = x.shape[0]
    k = min(int(metric["k"]), n - 1)  # mutual k-NN needs k < n; small sets use n - 1
    # a layer where one side is the same state for every item (e.g. layer 0 at a shared final
    # "." token) has no defined CKA or retrieval: it is left out and reported, never NaN
    keep = [j for j in range(len(layer_list)) if varies(x[:, j]) and varies(y[:, j])]
    if not keep:
        raise UserError(f"paired set {pset.name!r}: at every layer one side has the same state for all items; "
                         "nothing to compare (read other positions, e.g. positions=mean)")
    df = compare(x[:, keep].transpose(0, 1), y[:, keep].transpose(0, 1), metrics=tuple(metric["names"]), k=k,
                 csls=bool(metric["csls"]), csls_k=int(metric["csls_k"]), n_boot=int(metric["n_boot"]),
                 ci=float(metric["ci"]), seed=seed, clamp=metric.get("clamp"), layers=[layer_list[j] for j in keep])
    df.attrs["constant_layers"] = [layer_list[j] for j in range(len(layer_list)) if j not in keep]
    # how many different states each layer holds (the fewer side): few means the read token is
    # the same for many items (e.g. a final "." at layer 0), and the scores there say which items
    # share it, not what they mean; the report leaves such layers out of its peaks
    distinct = {layer_list[j]: min(n_distinct(x[:, j]), n_distinct(y[:, j])) for j in keep}
    df["n_distinct"] = df["layer"].map(distinct)
    for key, value in pset.ids.items():
        df[key] = value
    df["pair"] = pset.name
    return df


def n_distinct(states: Tensor) -> int:
    """Number of different rows of ``[n, d]`` states (exact equality)."""
    return int(torch.unique(states, dim=0).shape[0])


def varies(states: Tensor, rel: float = 1e-5) -> bool:
    """Do the ``[n, d]`` states differ across items (beyond float noise)?"""
    spread = (states - states.mean(0)).norm(dim=-1).max()
    return bool(spread > rel * states.norm(dim=-1).mean().clamp_min(1e-12))
