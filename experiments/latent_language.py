"""Do latents read out in English? (Wendler et al. 2024, logit lens at the answer position).

Method. Few-shot prompts whose next token is a word in the target language (translation
from a source language, repetition, or cloze). For every layer we read the residual state at
the last prompt token through final norm + unembedding and sum the next-token probability
over the token set of the correct target-language word and over that of its translation into
each candidate latent language (``latent_langs``, default the model's dominant language;
all token prefixes, with and without the word-boundary marker). Items whose token sets are
empty or overlap, or whose first candidate's word is a substring of the target, are dropped
and counted. A semantic hub that reads out in English predicts p(English) above p(target) in
middle layers and the target winning only in the last layers; with ``latent_langs=[en, zh]``
the report also says which candidate leads the material intermediate layers.
``directions=[[fr, zh], [de, ja]]`` runs several directions in one job.
"""
from __future__ import annotations

import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf

from hub.context import RunContext
from hub.errors import UserError
from hub.steps.latent import latent_language


def _directions(cfg) -> list[tuple[str, str]]:
    """``directions`` as (src, tgt) pairs, or the single ``src -> tgt``."""
    raw = cfg.get("directions")
    if raw is None:
        return [(str(cfg.src), str(cfg.tgt))]
    raw = OmegaConf.to_container(raw) if OmegaConf.is_config(raw) else raw
    if not isinstance(raw, list):
        raise UserError(f"directions={raw!r}: expected a list of [src, tgt], e.g. 'directions=[[fr,zh],[de,ja]]'")
    out = []
    for d in raw:
        pair = [d.get("src"), d.get("tgt")] if isinstance(d, dict) else d
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise UserError(f"directions: {d!r} is not a direction; expected [src, tgt] or {{src: .., tgt: ..}}, "
                            "e.g. 'directions=[[fr,zh],[de,ja]]'")
        out.append((str(pair[0]), str(pair[1])))
    if not out:
        raise UserError("directions=[]: expected at least one [src, tgt] (or directions=null for src -> tgt)")
    return out


def run(ctx: RunContext) -> pd.DataFrame:
    cfg = ctx.cfg
    raw = cfg.get("latent_langs")
    if raw is None:
        latents = None
    elif isinstance(raw, str):  # latent_langs=zh: one candidate
        latents = [raw]
    else:
        latents = [str(x) for x in OmegaConf.to_container(raw)]
    adapter = instantiate(cfg.modality)
    frames = [latent_language(ctx, adapter, cfg.task, src, tgt, latents=latents) for src, tgt in _directions(cfg)]
    return pd.concat(frames, ignore_index=True)
