"""Is a spoken sentence where its text is? Audio vs transcript inside an audio-language model.

Method. The same as image_similarity (the shared step hub.steps.similarity) with the speech
adapter: each clip goes
through the model's processor (log-mel features, one placeholder token per audio frame after
pooling) inside the family's audio prompt; the language model's residual stream is averaged
over the audio-token span (or read at its last token) at every layer, and the transcript (or
its English translation, ``modality.text_lang=en``) is read at its last token. Per spoken
language the comparator scores clip i against text i against the unpaired pairs.
"""
from __future__ import annotations

import pandas as pd
from hydra.utils import instantiate

from hub.context import RunContext
from hub.steps.similarity import paired_similarity


def run(ctx: RunContext) -> pd.DataFrame:
    adapter = instantiate(ctx.cfg.modality)
    return paired_similarity(ctx, adapter, heading=f"{adapter.modality.capitalize()} vs text, per layer")
