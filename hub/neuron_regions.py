"""Overlap of MLP neuron sets (LAPE, ``hub.neurons``) with parameter regions (``hub.regions``).

Regions are sets of weight *entries*; neurons are channels of the MLP's intermediate
activation. The bridge is the parameters a neuron owns. In a gated MLP (llama, mistral, qwen2,
gemma/2/3, ...) neuron j of block l owns row j of ``gate_proj.weight`` ``[n, d]``, row j of
``up_proj.weight`` ``[n, d]`` and column j of ``down_proj.weight`` ``[d, n]``: 3d entries, and
zeroing all of them removes the neuron exactly as :func:`hub.neurons.deactivated` does.

A region's *share* of neuron (l, j) is the fraction of those 3d entries inside the region. From
it, for a neuron set N (``[L, n]`` bool):

- ``overlap``: the region's neuron set R is its |N| neurons with the largest share (share > 0
  only; ties by position), and overlap = |N ∩ R| / |N|, in [0, 1]: 1 when the region is made
  of N's parameters, 0 when it holds none of them. ``chance`` = |N| / all neurons is what a
  random N of that size would give on average.
- ``share_in``: the mean share over N's neurons, ``density``: the mean share over all neurons
  (the region's density in the MLP weights), ``enrichment`` = share_in / density (1 = chance).

Only gated MLPs with ``gate_proj``/``up_proj``/``down_proj`` are supported; others raise.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from hub.errors import UserError
from hub.models.model import HubModel
from hub.regions import Mask

_PARTS = (("gate_proj", 0), ("up_proj", 0), ("down_proj", 1))  # (module, axis that indexes the neuron)


def neuron_parameters(hm: HubModel) -> list[dict[str, int]]:
    """Per block, ``{full parameter name: neuron axis}`` of its MLP's gate, up and down weights."""
    names = {id(p): n for n, p in hm.model.named_parameters()}
    out = []
    for i, block in enumerate(hm.blocks):
        mlp = getattr(block, "mlp", None)
        parts = {}
        for attr, axis in _PARTS:
            lin = getattr(mlp, attr, None)
            w = getattr(lin, "weight", None)
            if w is None or w.ndim != 2:
                raise UserError(f"{hm.name}: block {i} has no mlp.{attr}.weight; neuron/region overlap needs a gated "
                                "MLP with gate_proj, up_proj and down_proj (llama, mistral, qwen2, gemma families)")
            parts[names[id(w)]] = axis
        out.append(parts)
    return out


def region_neuron_share(hm: HubModel, region: Mask) -> Tensor:
    """``[L, n]`` fp32: the fraction of each neuron's gate row, up row and down column in ``region``."""
    rows = []
    for i, parts in enumerate(neuron_parameters(hm)):
        count, owned, n = None, 0, None
        for name, axis in parts.items():
            shape = region.shapes.get(name)
            if shape is None:
                raise UserError(f"region {region.name!r} does not cover {name}: expected regions scored over the "
                                "MLP matrices (importance.include=null or patterns matching *.mlp.*)")
            idx = region.index[name]
            neuron = idx // shape[1] if axis == 0 else idx % shape[1]
            size = shape[axis]
            if n is not None and size != n:
                raise ValueError(f"block {i}: {name} has {size} neurons on axis {axis}, the other MLP weights {n}")
            n = size
            c = torch.bincount(neuron, minlength=n).double()
            count = c if count is None else count + c
            owned += shape[1 - axis]
        rows.append((count / owned).float())
    return torch.stack(rows)


def neuron_overlap(neurons: Tensor, share: Tensor) -> dict[str, float]:
    """Overlap of a neuron set ``[L, n]`` bool with a region given as its ``share [L, n]`` (see module docstring)."""
    if neurons.shape != share.shape:
        raise ValueError(f"neuron_overlap: neurons {tuple(neurons.shape)} and share {tuple(share.shape)} differ")
    flat, s = neurons.flatten().bool(), share.flatten().double()
    k = int(flat.sum())
    density = float(s.mean())
    if k == 0:
        return {"overlap": math.nan, "chance": 0.0, "share_in": math.nan, "density": density,
                "enrichment": math.nan, "n_neurons": 0}
    order = torch.sort(-s, stable=True).indices[:k]  # the k largest shares, ties by position
    top = torch.zeros_like(flat)
    top[order[s[order] > 0]] = True
    share_in = float(s[flat].mean())
    return {"overlap": int((flat & top).sum()) / k, "chance": k / flat.numel(), "share_in": share_in,
            "density": density, "enrichment": share_in / density if density > 0 else math.nan, "n_neurons": k}
