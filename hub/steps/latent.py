"""The latent-language readout of one task (Wendler et al. 2024), used by latent_language and demo.

The text adapter builds the prompts (translation, repetition or cloze) and token sets
``[target word, dominant-language word]``; a lens reads every layer at the last prompt token;
rows, two figures (probabilities; entropy and energy) and a reading go to the run.
"""
from __future__ import annotations

import pandas as pd

from hub.context import RunContext
from hub.describe import latent_reading
from hub.lens.base import Lens
from hub.lens.readout import lens_readout
from hub.plots import layer_curves
from hub.readings import min_prob_of


def latent_language(ctx: RunContext, adapter, task: str, src: str, tgt: str, lens: Lens | None = None
                    ) -> pd.DataFrame:
    """p(target) and p(dominant language) per layer at the answer position, for one task."""
    cfg, hm = ctx.cfg, ctx.model
    lt = adapter.lens_task(task, src, tgt, hm.tokenizer)
    tgt_name, latent = lt.set_names
    src, tgt = lt.ids["src"], lt.ids["tgt"]
    rows, _ = lens_readout(hm, lt.prompts, lt.token_sets, lt.set_names, layers=cfg.experiment.layers,
                           apply_norm=cfg.lens_norm, batch_size=cfg.batch_size, progress=cfg.progress,
                           energy=cfg.experiment.energy, lens=lens)
    df = ctx.add(rows, task=task, src=src, tgt=tgt, modality="text")
    tag = f"{task}_{src}-{tgt}"
    probs = df[df["metric"] == "lang_prob"]
    figs = [layer_curves(probs, ctx.out / f"latent_{tag}_prob.png", group="lang", baseline_col=None,
                         title=f"{task} {src}→{tgt}", ylabel="probability", ylim=(0, 1))]
    other = df[df["metric"].isin(["entropy", "token_energy"])].assign(lang="all")
    figs.append(layer_curves(other, ctx.out / f"latent_{tag}_entropy_energy.png", group="lang", panels="metric",
                             baseline_col=None, title=f"{task} {src}→{tgt}", ylabel="value"))
    example = lt.prompts[0].replace("\n", "\n    ")
    ctx.report.section(
        f"Latent language: {task} {src} → {tgt}",
        f"{len(lt.prompts)} prompts; dropped {dict(lt.drops) or 'none'}. Example prompt:\n\n    {example}\n\n"
        + latent_reading(df, tgt_name, latent, min_prob_of(cfg)),
        figures=figs,
    )
    return df
