"""Is an image where its caption is? Image vs caption inside a vision-language model.

Method. Each image goes through the model's processor inside the family's image prompt; the
language model's residual stream is read at every layer (0 = embeddings with the image
features merged in, k = output of block k) and averaged over the image-token span (or read
at its last token). The caption in each language is read at its last token, as text alone.
Per caption language the shared comparator scores image i against caption i, against the
unpaired pairs i != j (cosine paired − unpaired, centred cosine, linear CKA biased and
debiased, mutual k-NN, top-1 retrieval; each with its baseline and a bootstrap interval).
A semantic hub predicts paired similarity above baseline in the middle layers, in every
caption language. The image side is captured once and reused for every caption language.
"""
from __future__ import annotations

import pandas as pd
from hydra.utils import instantiate

from hub.errors import UserError
from experiments.similarity import report_similarity
from experiments.whisper_common import compare_states
from hub.context import RunContext
from hub.pairs import capture_side


def run(ctx: RunContext) -> pd.DataFrame:
    cfg = ctx.cfg
    hm = ctx.model
    adapter = instantiate(cfg.modality)
    layers = hm.check_layers(cfg.experiment.layers)
    captured: dict[int, object] = {}  # id(side) -> [n, layer, d]; the adapter reuses the image side
    frames = []
    for pset in adapter.pairs(hm):
        a, b = (captured.setdefault(id(side), capture_side(hm, side, layers, cfg.batch_size))
                for side in (pset.a, pset.b))
        df = compare_states(a, b, cfg.metric, layers, seed=cfg.seed)
        frames.append(df.assign(pair=pset.name, **pset.ids))
    if not frames:
        raise UserError(f"{adapter.describe()} yielded no image-caption pairs; check the modality config")
    df = ctx.add(pd.concat(frames, ignore_index=True), modality=adapter.modality)
    report_similarity(ctx, df, adapter, heading=f"{adapter.modality.capitalize()} vs text, per layer")
    return df
