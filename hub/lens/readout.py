"""Latent-language readout (Wendler et al. 2024): what a lens says at the answer.

Per layer at the answer position: p(language) = summed next-token probability over that
language's token set, for the target and the dominant language; entropy of the lens
distribution in bits; token energy. Means over items with 95% normal-approximation
confidence intervals. The logit lens by default; any :class:`~hub.lens.base.Lens` via ``lens=``.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from hub.lens.base import Lens
from hub.lens.logit import LogitLens
from hub.models import HubModel
from hub.stats import mean_ci


def lens_readout(
    hm: HubModel,
    prompts: Sequence[str],
    token_sets: Sequence[Sequence[frozenset[int]]],
    set_names: Sequence[str],
    *,
    layers: Sequence[int] | str = "all",
    apply_norm: bool = True,
    batch_size: int = 16,
    progress: bool = False,
    energy: bool = True,
    lens: Lens | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Per-layer ``lang_prob`` (one row group per set name), ``entropy`` and ``token_energy``.

    ``token_sets[i]`` holds, for prompt i, one token set per name in ``set_names``.
    Returns tidy rows and the raw per-item arrays (``set_prob [n, layer, sets]`` ...).
    ``lens`` (default: the logit lens with ``apply_norm``) reads the states.
    """
    layer_list = hm.check_layers(layers)
    states = hm.capture(list(prompts), layers=layer_list, positions="last", batch_size=batch_size,
                        progress=progress)  # [n, layer, d]
    lens = lens if lens is not None else LogitLens(hm, apply_norm=apply_norm)
    return states_readout(lens, states, token_sets, set_names, layer_list, energy=energy)


def states_readout(lens: Lens, states: torch.Tensor, token_sets: Sequence[Sequence[frozenset[int]]],
                   set_names: Sequence[str], layers: Sequence[int], *, energy: bool = True
                   ) -> tuple[pd.DataFrame, dict]:
    """:func:`lens_readout` on states already captured, ``states [n, layer, d]`` at ``layers``
    (so several lenses can read one capture)."""
    layer_list = list(layers)
    red = lens.reduce(states, token_sets=[[list(s) for s in sets] for sets in token_sets], layers=layer_list)
    set_prob = red["set_prob"].numpy()  # [n, layer, sets]
    ent = red["entropy"].numpy()  # [n, layer]
    rows = []
    n = states.shape[0]
    for s, name in enumerate(set_names):
        m, lo, hi = mean_ci(set_prob[:, :, s], bounds=(0.0, 1.0))
        rows += [{"metric": "lang_prob", "lang": name, "layer": k, "value": m[j], "ci_low": lo[j],
                  "ci_high": hi[j], "n": n} for j, k in enumerate(layer_list)]
    m, lo, hi = mean_ci(ent, bounds=(0.0, np.inf))
    rows += [{"metric": "entropy", "layer": k, "value": m[j], "ci_low": lo[j], "ci_high": hi[j], "n": n}
             for j, k in enumerate(layer_list)]
    raw = {"set_prob": set_prob, "entropy": ent, "layers": layer_list}
    if energy:
        en = lens.token_energy(states, layers=layer_list).numpy()  # [n, layer]
        m, lo, hi = mean_ci(en)
        rows += [{"metric": "token_energy", "layer": k, "value": m[j], "ci_low": lo[j], "ci_high": hi[j], "n": n}
                 for j, k in enumerate(layer_list)]
        raw["token_energy"] = en
    return pd.DataFrame(rows), raw


@torch.no_grad()
def top_tokens(hm: HubModel, prompt: str, k: int = 5, apply_norm: bool = True, lens: Lens | None = None
               ) -> pd.DataFrame:
    """Top-k lens tokens per layer for one prompt (a table for reports)."""
    states = hm.capture([prompt], layers="all", positions="last")
    lens = lens if lens is not None else LogitLens(hm, apply_norm=apply_norm)
    red = lens.reduce(states, top_k=k, layers=hm.check_layers("all"))
    rows = []
    for layer in range(states.shape[1]):
        toks = [hm.tokenizer.decode([int(t)]) for t in red["top_ids"][0, layer]]
        probs = red["top_probs"][0, layer].tolist()
        rows.append({"layer": layer, "top tokens (p)": ", ".join(f"{t!r} ({p:.2f})" for t, p in zip(toks, probs))})
    return pd.DataFrame(rows)
