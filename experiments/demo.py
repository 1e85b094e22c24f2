"""The main job: is there a semantic hub, and does it read out in English?

1. Cross-lingual similarity of words and sentences, every language against English, per
   layer, all comparator metrics (experiments.similarity).
2. Translation into Chinese from a non-English source, and into a second non-English target,
   with the latent-language readout (experiments.latent_language).
"""
from __future__ import annotations

from hydra.utils import instantiate

from experiments import latent_language, similarity
from hub.context import RunContext


def run(ctx: RunContext) -> None:
    similarity.run(ctx)
    adapter = instantiate(ctx.cfg.modality)
    for pair in ctx.cfg.experiment.translations:
        latent_language.run_task(ctx, adapter, "translation", pair.src, pair.tgt)
