"""Paired similarity per layer (semantic-hub paper, Sec. 3; crosslingual = the text adapter).

Method. The modality adapter yields paired sets: item i of side a and item i of side b mean
the same thing (a word and its English translation, a sentence and its translation, ...).
For every layer 0..L we capture each side at its read positions and score the pairs with the
shared comparator: baseline-adjusted cosine (paired minus unpaired), cosine after
mean-centering, linear CKA (biased and debiased), mutual k-NN and top-1 retrieval, each with
its chance/unpaired baseline and a bootstrap interval over items. A hub predicts paired
similarity above baseline that rises from the first layers into the middle layers.
"""
from __future__ import annotations

import pandas as pd
from hydra.utils import instantiate

from hub.context import RunContext
from hub.steps.similarity import paired_similarity


def run(ctx: RunContext) -> pd.DataFrame:
    return paired_similarity(ctx, instantiate(ctx.cfg.modality))
