"""Do latents read out in English? (Wendler et al. 2024, logit lens at the answer position).

Method. Few-shot prompts whose next token is a word in the target language (translation
from a source language, repetition, or cloze). For every layer we read the residual state at
the last prompt token through final norm + unembedding and sum the next-token probability
over the token set of the correct target-language word and over that of its English
translation (all token prefixes, with and without the word-boundary marker). Items whose
token sets are empty or overlap, or whose English word is a substring of the target, are
dropped and counted. A semantic hub that reads out in English predicts p(English) above
p(target) in middle layers and the target winning only in the last layers.
"""
from __future__ import annotations

import pandas as pd
from hydra.utils import instantiate

from hub.context import RunContext
from hub.steps.latent import latent_language


def run(ctx: RunContext) -> pd.DataFrame:
    cfg = ctx.cfg
    return latent_language(ctx, instantiate(cfg.modality), cfg.task, cfg.src, cfg.tgt)
