"""Freezing the core region against catastrophic forgetting (Zhang et al. 2024, Sec. 5).

Method. We score the core region on the scoring text of all languages (or load it). Then we
continue pre-training the model on one language's scoring text alone (AdamW, small learning
rate, a bounded number of steps, the matrices inside the decoder blocks trainable), once per
condition, each from the same original weights:

- ``none``:   nothing frozen;
- ``core``:   the core region frozen (its gradients masked, grad *= ~mask, entries unchanged);
- ``random``: a random region of the same size frozen (control: is it the *core* that matters,
  or just freezing 1% of the entries?).

Before and after, we measure perplexity per language on held-out text. Forgetting = the rise
of log perplexity on the languages not trained on; learning = its fall on the trained language.

Expected (a check, not a target): freezing the core region reduces forgetting of the other
languages compared with no freezing (and with freezing a random 1%), at a small cost in
learning the new language.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from hub.context import RunContext
from hub.errors import UserError
from hub.perplexity import token_windows
from hub.plots import line_styles, save_fig
from hub.regions import NONE, continue_pretraining, restoring, select_parameters
from hub.steps.regions import eval_rows, get_regions, load_splits, wants_mono


def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg, ctx.model
    e = cfg.experiment
    scoring, held_out = load_splits(cfg)
    lang = str(e.train_lang)
    if lang not in scoring:
        raise UserError(f"experiment.train_lang={lang!r} is not among experiment.languages {list(scoring)}")
    regions = get_regions(ctx, hm, scoring, mono=wants_mono(e.freeze))
    conditions = regions.resolve(list(e.freeze))
    train = token_windows(hm, scoring[lang], int(e.window), int(e.train_tokens), name=f"language {lang!r}")
    include = list(e.train_include) if e.get("train_include") else None
    names = list(select_parameters(hm, include))
    rows = eval_rows(hm, held_out, cfg, phase="before", frozen=NONE, train_lang=lang)
    losses = []
    for cond in conditions:
        mask = None if cond == NONE else regions[cond]
        t0 = time.time()
        with restoring(hm, names):
            loss = continue_pretraining(hm, train, steps=int(e.steps), lr=float(e.lr), batch_size=int(e.batch_size),
                                        freeze=mask, include=include, weight_decay=float(e.weight_decay),
                                        seed=int(cfg.seed), progress=bool(cfg.progress))
            rows += eval_rows(hm, held_out, cfg, phase="after", frozen=cond, train_lang=lang)
        losses += [{"metric": "train_loss", "layer": -1, "value": v, "n": int(e.batch_size), "step": i + 1,
                    "frozen": cond, "phase": "train", "lang": lang, "train_lang": lang} for i, v in enumerate(loss)]
        print(f"[regions_freeze] frozen={cond}: {time.time() - t0:.0f}s, loss {loss[0]:.3f} -> {loss[-1]:.3f}",
              flush=True)
    df = ctx.add(pd.concat([pd.DataFrame(rows), pd.DataFrame(losses)], ignore_index=True), task="freeze")
    report(ctx, df, lang)
    return df


def forgetting(df: pd.DataFrame, lang: str) -> pd.DataFrame:
    """Per condition: mean Δ log perplexity on other languages (forgetting) and on ``lang`` (learning)."""
    ppl = df[df.metric == "perplexity"]
    before = ppl[ppl.phase == "before"].set_index("lang")["nll"]
    out = []
    for cond, d in ppl[ppl.phase == "after"].groupby("frozen", sort=False):
        delta = d.set_index("lang")["nll"] - before
        others = delta.drop(lang)
        out.append({"frozen": cond, "Δ log ppl, other languages (mean)": float(others.mean()) if len(others) else
                    float("nan"), "Δ log ppl, other languages (max)": float(others.max()) if len(others) else
                    float("nan"), f"Δ log ppl, {lang} (trained)": float(delta[lang])})
    return pd.DataFrame(out)


def report(ctx: RunContext, df: pd.DataFrame, lang: str) -> None:
    import matplotlib.pyplot as plt

    e = ctx.cfg.experiment
    ppl = df[df.metric == "perplexity"]
    before = ppl[ppl.phase == "before"].set_index("lang")["nll"]
    langs = list(before.index)
    after = ppl[ppl.phase == "after"]
    conds = list(dict.fromkeys(after["frozen"]))
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.4), gridspec_kw={"width_ratios": [2, 1]})
    ax = axes[0]
    width = 0.8 / max(len(conds), 1)
    x = np.arange(len(langs))
    for i, c in enumerate(conds):
        delta = after[after.frozen == c].set_index("lang")["nll"].reindex(langs) - before
        ax.bar(x + (i - (len(conds) - 1) / 2) * width, delta.to_numpy(), width, label=f"frozen: {c}", color=f"C{i}")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, [f"{g}*" if g == lang else g for g in langs])
    ax.set_ylabel("Δ log perplexity (after − before)")
    ax.set_title(f"continued pre-training on {lang}* ({e.steps} steps, lr {e.lr})")
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax = axes[1]
    loss = df[df.metric == "train_loss"]
    styles = line_styles(conds, order=conds)
    for c in conds:
        d = loss[loss.frozen == c]
        ax.plot(d["step"], d["value"], color=styles[c]["color"], ls=styles[c]["ls"], marker=styles[c]["marker"],
                markevery=max(1, len(d) // 8), label=c)
    ax.set_xlabel("step")
    ax.set_ylabel(f"training loss ({lang})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig_path = save_fig(fig, ctx.out / "regions_freeze.png")
    table = forgetting(df, lang)
    text = (f"Continued pre-training of {ctx.cfg.model.name} on {lang} ({len(loss) // max(len(conds), 1)} steps of "
            f"{e.batch_size}×{e.window} tokens from up to {e.train_tokens} scoring tokens, AdamW lr={e.lr}, weight "
            f"decay {e.weight_decay}), once per frozen region, each from the original weights. Perplexity on "
            f"held-out text before and after; Δ log perplexity > 0 is forgetting (other languages) and < 0 learning "
            f"({lang}).")
    ctx.report.section("Freezing the core region during continued pre-training", text, figures=[fig_path],
                       table=table)
