"""The main job: is there a semantic hub, and does it read out in English?

1. Cross-lingual similarity of words and sentences, every language against English, per
   layer, all comparator metrics (the step of experiments.similarity).
2. Translation into Chinese from a non-English source, and into a second non-English target,
   with the latent-language readout (the step of experiments.latent_language).
"""
from __future__ import annotations

from hydra.utils import instantiate

from hub.context import RunContext
from hub.steps.latent import latent_language
from hub.steps.similarity import paired_similarity


def run(ctx: RunContext) -> None:
    paired_similarity(ctx, instantiate(ctx.cfg.modality))
    adapter = instantiate(ctx.cfg.modality)
    for pair in ctx.cfg.experiment.translations:
        latent_language(ctx, adapter, "translation", pair.src, pair.tgt)
