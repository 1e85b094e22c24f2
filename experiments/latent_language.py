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
from hub.describe import latent_reading
from hub.plots import layer_curves
from hub.readings import min_prob_of
from hub.readout import lens_readout


def run(ctx: RunContext) -> pd.DataFrame:
    cfg = ctx.cfg
    return run_task(ctx, instantiate(cfg.modality), cfg.task, cfg.src, cfg.tgt)


def run_task(ctx: RunContext, adapter, task: str, src: str, tgt: str) -> pd.DataFrame:
    cfg, hm = ctx.cfg, ctx.model
    lt = adapter.lens_task(task, src, tgt, hm.tokenizer)
    rows, _ = lens_readout(hm, lt.prompts, list(zip(lt.target_sets, lt.latent_sets)), [lt.tgt, lt.latent],
                           layers=cfg.experiment.layers, apply_norm=cfg.lens_norm, batch_size=cfg.batch_size,
                           progress=cfg.progress, energy=cfg.experiment.energy)
    df = ctx.add(rows, task=task, src=lt.src, tgt=lt.tgt, modality="text")
    tag = f"{task}_{lt.src}-{lt.tgt}"
    probs = df[df["metric"] == "lang_prob"]
    figs = [layer_curves(probs, ctx.out / f"latent_{tag}_prob.png", group="lang", baseline_col=None,
                         title=f"{task} {lt.src}→{lt.tgt}", ylabel="probability", ylim=(0, 1))]
    other = df[df["metric"].isin(["entropy", "token_energy"])].assign(lang="all")
    figs.append(layer_curves(other, ctx.out / f"latent_{tag}_entropy_energy.png", group="lang", panels="metric",
                             baseline_col=None, title=f"{task} {lt.src}→{lt.tgt}", ylabel="value"))
    example = lt.prompts[0].replace("\n", "\n    ")
    ctx.report.section(
        f"Latent language: {task} {lt.src} → {lt.tgt}",
        f"{len(lt.prompts)} prompts; dropped {dict(lt.drops) or 'none'}. Example prompt:\n\n    {example}\n\n"
        + latent_reading(df, lt.tgt, lt.latent, min_prob_of(cfg)),
        figures=figs,
    )
    return df
