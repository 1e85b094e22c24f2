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

from hub.context import RunContext
from hub.steps.similarity import paired_similarity


def run(ctx: RunContext) -> pd.DataFrame:
    adapter = instantiate(ctx.cfg.modality)
    return paired_similarity(ctx, adapter, heading=f"{adapter.modality.capitalize()} vs text, per layer")
