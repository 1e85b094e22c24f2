"""The latent-language readout of one task (Wendler et al. 2024), used by latent_language and demo.

The text adapter builds the prompts (translation, repetition or cloze) and token sets
``[target word, dominant-language word]``; each configured lens (``lens=`` group, conf/lens/;
default the logit lens) reads every layer at the last prompt token; rows (with a ``lens``
column), figures and a reading per lens go to the run. With several lenses one figure
overlays p(target) and p(dominant language) under every lens.
"""
from __future__ import annotations

import pandas as pd

from hub.context import RunContext
from hub.describe import latent_reading
from hub.lens.base import Lens
from hub.lens.readout import states_readout
from hub.plots import layer_curves
from hub.readings import min_prob_of
from hub.steps.lenses import configured_lenses, lens_series, per_lens, per_lens_text


def latent_language(ctx: RunContext, adapter, task: str, src: str, tgt: str, lens: Lens | None = None
                    ) -> pd.DataFrame:
    """p(target) and p(dominant language) per layer at the answer position, for one task,
    under ``lens`` or else every lens the config selects (``cfg.lens``)."""
    cfg, hm = ctx.cfg, ctx.model
    lenses = {lens.name: lens} if lens is not None else configured_lenses(cfg, hm, experiment=cfg.experiment.name)
    lt = adapter.lens_task(task, src, tgt, hm.tokenizer)
    tgt_name, latent = lt.set_names
    src, tgt = lt.ids["src"], lt.ids["tgt"]
    layers = hm.check_layers(cfg.experiment.layers)
    states = hm.capture(list(lt.prompts), layers=layers, positions="last", batch_size=cfg.batch_size,
                        progress=cfg.progress)  # [n, layer, d], read by every lens
    rows = per_lens(lenses, lambda _, ln: states_readout(ln, states, lt.token_sets, lt.set_names, layers,
                                                         energy=cfg.experiment.energy)[0])
    df = ctx.add(rows, task=task, src=src, tgt=tgt, modality="text")
    tag = f"{task}_{src}-{tgt}"
    names = list(lenses)
    probs = df[df["metric"] == "lang_prob"]
    if len(names) == 1:
        figs = [layer_curves(probs, ctx.out / f"latent_{tag}_prob.png", group="lang", baseline_col=None,
                             title=f"{task} {src}→{tgt} ({names[0]} lens)", ylabel="probability", ylim=(0, 1))]
    else:  # one figure: p(target) and p(latent) under every lens, a distinct style per (language, lens)
        series, order = lens_series(probs, "lang", order=(latent, tgt_name))
        figs = [layer_curves(series, ctx.out / f"latent_{tag}_prob_lenses.png", group="series", baseline_col=None,
                             group_order=order, title=f"{task} {src}→{tgt}: {', '.join(names)} lenses",
                             ylabel="probability", ylim=(0, 1))]
    other = df[df["metric"].isin(["entropy", "token_energy"])]
    other = other.assign(lens=other["lens"].astype(str) + " lens")
    figs.append(layer_curves(other, ctx.out / f"latent_{tag}_entropy_energy.png", group="lens", panels="metric",
                             baseline_col=None, title=f"{task} {src}→{tgt}", ylabel="value",
                             group_order=[f"{n} lens" for n in names]))
    example = lt.prompts[0].replace("\n", "\n    ")
    min_prob = min_prob_of(cfg)
    readings = per_lens_text(df, lambda d, n: latent_reading(d, tgt_name, latent, min_prob,
                                                             state_rule=(n == names[-1])))
    ctx.report.section(
        f"Latent language: {task} {src} → {tgt}",
        f"{len(lt.prompts)} prompts; dropped {dict(lt.drops) or 'none'}. Example prompt:\n\n    {example}\n\n"
        + readings,
        figures=figs,
    )
    return df
