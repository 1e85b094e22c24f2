"""Sentiment steering across languages (semantic-hub paper, Sec. 5: interventions).

Method. For each seed, each polarity of a language's sentiment lexicon is split at random into
``n_build`` words that build a steering vector and held-out words that measure it. The vector
at layer k is the difference of mean residual states (last token of each word) of the
positive and the negative build words (ActAdd-style "Good" − "Bad"). It is added, times a
scale s, to the output of block k at every prompt position (and at every generated token) of
neutral prompts that invite an evaluative word ("The hotel room was"), in each language.
Two vectors are compared on the same prompts: one built from English words (cross-lingual:
does an English direction steer German text?) and one built in the prompt's own language;
scale 0 is the unsteered baseline. Two measures, both on held-out words of the prompt's
language: (1) the shift in next-token log-odds of positive vs negative words,
log Σ p(first tokens of positive words) − log Σ p(first tokens of negative words), relative
to scale 0; (2) a lexicon score of the greedy continuation, (#positive − #negative
held-out lexicon matches). Optionally (3) a user-supplied classifier's P(positive).
A shared hub predicts that the English vector moves other languages in the same direction,
roughly as much as the native vector does at the same layer and scale.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from hub.context import RunContext
from hub.errors import UserError
from hub.intervene import Intervention, generate_with, mean_state_norm, next_token_logprobs_with
from hub.models import HubModel
from hub.results import atomic_write_text
from hub.steps.steering import (any_effect, best_cell, describe_cell, effect_figure, resolve_layers,
                                summarise)
from modalities.sentiment import (NO_SPACE_LANGS, LexiconScorer, first_token_sets, read_lexicon, read_prompts,
                                  split_lexicon)

# ------------------------------------------------------------------- measures
def log_odds(lp: torch.Tensor, pos: list[int], neg: list[int]) -> np.ndarray:
    """``log Σ p(pos) − log Σ p(neg)`` per row of next-token log-probs ``[n, vocab]``."""
    return (torch.logsumexp(lp[:, pos], -1) - torch.logsumexp(lp[:, neg], -1)).numpy()


def distinct_tokens(hm: HubModel, text: str) -> float:
    """Unique / total tokens of a continuation: near 1 for normal text, low when it degenerates."""
    ids = hm.tokenizer(text, add_special_tokens=False)["input_ids"]
    return len(set(ids)) / len(ids) if ids else 0.0


def shift_from_zero(u: pd.DataFrame, col: str) -> np.ndarray:
    """``col`` minus its scale-0 value for the same vector, language, layer, seed and prompt."""
    keys = ["src", "lang", "layer", "seed", "prompt"]
    base = u[u["scale"] == 0].set_index(keys)[col]
    return u[col].to_numpy() - base.reindex(pd.MultiIndex.from_frame(u[keys])).to_numpy()


def classifier_scores(path: str, positive_label: str, texts: list[str], batch_size: int) -> np.ndarray:
    """P(positive) from a local Hugging Face text-classification model (user-supplied)."""
    from transformers import pipeline

    clf = pipeline("text-classification", model=path, top_k=None, device=-1)
    out = clf(texts, batch_size=batch_size, truncation=True)
    labels = {d["label"] for d in out[0]}
    if positive_label not in labels:
        raise UserError(f"classifier {path}: label {positive_label!r} not among {sorted(labels)}; set "
                         "experiment.classifier.positive_label")
    return np.array([next(d["score"] for d in o if d["label"] == positive_label) for o in out])


# ---------------------------------------------------------------------- run
def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg.experiment, ctx.model
    langs, src_lang = list(cfg.langs), str(cfg.vector_lang)
    layers, scales, seeds = resolve_layers(hm, list(cfg.layers)), [float(s) for s in cfg.scales], list(cfg.seeds)
    lexicons = {L: read_lexicon(Path(cfg.lexicons) / f"{L}.txt", L) for L in {*langs, src_lang}}
    prompts = read_prompts(cfg.prompts, langs)
    splits = {(L, s): split_lexicon(lexicons[L], int(cfg.n_build), s) for L in lexicons for s in seeds}
    bs = int(ctx.cfg.batch_size)

    # Vectors: [layer, d] per (built-in language, seed), from one capture per word set.
    vectors: dict[tuple[str, int], torch.Tensor] = {}
    for (L, s), sp in splits.items():
        st_p = hm.capture(sp.build_pos, layers=layers, positions=cfg.read_positions, batch_size=bs)
        st_n = hm.capture(sp.build_neg, layers=layers, positions=cfg.read_positions, batch_size=bs)
        vectors[L, s] = st_p.mean(0) - st_n.mean(0)

    # Conditions: the English vector on every language's prompts, and each language's own vector.
    conditions = [(src_lang, L) for L in langs] + [(L, L) for L in langs if L != src_lang]
    gen_on = bool(cfg.generate)
    gen_seeds = set(seeds if cfg.get("generate_seeds") is None else cfg.generate_seeds)
    units = []

    def measure(src: str, lang: str, layer: int, scale: float, seed: int, lp: torch.Tensor,
                texts: list[str] | None) -> None:
        sp = splits[lang, seed]
        sets = first_token_sets(hm, lang, sp.held_pos, sp.held_neg)
        lo = log_odds(lp, *sets) if sets else np.full(len(prompts[lang]), np.nan)
        scorer = LexiconScorer(lexicons[lang], sp.held_pos, sp.held_neg)
        for i, p in enumerate(prompts[lang]):
            row = {"src": src, "lang": lang, "layer": layer, "scale": scale, "seed": seed, "prompt": i,
                   "prompt_text": p, "log_odds": float(lo[i])}
            if texts is not None:
                row["lexicon_net"] = float(scorer(texts[i]))
                row["distinct_tokens"] = distinct_tokens(hm, texts[i])
                row["continuation"] = texts[i]
            units.append(row)

    # Scale 0: one unsteered pass per language, shared by every layer, seed and vector.
    base_lp, base_txt = {}, {}
    for L in langs:
        base_lp[L] = next_token_logprobs_with(hm, prompts[L], None, batch_size=bs)
        base_txt[L] = generate_with(hm, prompts[L], None, int(cfg.max_new_tokens), batch_size=bs) if gen_on else None

    jobs = [(layer, scale, seed, src) for layer in layers for scale in scales if scale != 0 for seed in seeds
            for src in dict.fromkeys(s for s, _ in conditions)]
    for layer in layers:
        for seed in seeds:
            for src, L in conditions:
                measure(src, L, layer, 0.0, seed, base_lp[L], base_txt[L] if seed in gen_seeds else None)
    for layer, scale, seed, src in tqdm(jobs, desc="steer_sentiment", disable=not ctx.cfg.progress):
        targets = [L for s, L in conditions if s == src]
        batch_prompts = [p for L in targets for p in prompts[L]]
        iv = Intervention(vectors[src, seed][layers.index(layer)], layer, cfg.positions, scale)
        lp = next_token_logprobs_with(hm, batch_prompts, iv, batch_size=bs)
        txt = generate_with(hm, batch_prompts, iv, int(cfg.max_new_tokens), when=cfg.when,
                            batch_size=bs) if gen_on and seed in gen_seeds else None
        start = 0
        for L in targets:
            k = len(prompts[L])
            measure(src, L, layer, scale, seed, lp[start:start + k], txt[start:start + k] if txt else None)
            start += k

    u = pd.DataFrame(units)
    u["log_odds_shift"] = shift_from_zero(u, "log_odds")
    if "lexicon_net" in u:
        u["lexicon_shift"] = shift_from_zero(u, "lexicon_net")
    if cfg.classifier.path and gen_on:
        has = u["continuation"].notna() if "continuation" in u else pd.Series(False, index=u.index)
        g = u[has]
        full = [p + c if L in NO_SPACE_LANGS else f"{p} {c}"
                for p, c, L in zip(g["prompt_text"], g["continuation"], g["lang"])]
        u.loc[has, "classifier_positive"] = classifier_scores(str(cfg.classifier.path),
                                                              str(cfg.classifier.positive_label), full, bs)
    u["vector"] = np.where(u["src"] == u["lang"], "same language", f"from {src_lang}")
    metrics = ["log_odds_shift", "lexicon_net", "lexicon_shift", "distinct_tokens", "classifier_positive"]
    df = summarise(u, ["vector", "src", "lang", "layer", "scale"], metrics, unit="prompt",
                   ci=float(cfg.ci), n_boot=int(cfg.n_boot), seed=int(ctx.cfg.seed))
    df = ctx.add(df, task="sentiment")
    gens = pd.DataFrame()
    if "continuation" in u:
        gens = u[u["continuation"].notna()][["src", "lang", "layer", "scale", "seed", "prompt_text", "continuation"]]
        gens = gens.rename(columns={"prompt_text": "prompt"})
        atomic_write_text(ctx.out / "generations.csv", gens.to_csv(index=False))
    norms = vector_norms(hm, vectors, prompts, layers, seeds, cfg.positions, bs)
    report(ctx, df, norms, gens, src_lang, langs)
    return df


def vector_norms(hm: HubModel, vectors, prompts, layers, seeds, positions, bs) -> pd.DataFrame:
    """Mean vector norm per (language, layer) next to the prompts' residual norm: the scale's unit."""
    all_prompts = [p for ps in prompts.values() for p in ps]
    rows = []
    for layer in layers:
        resid = mean_state_norm(hm, all_prompts, layer, positions="all" if positions == "all" else "last",
                                batch_size=bs)
        for L in sorted({L for L, _ in vectors}):
            v = np.mean([float(vectors[L, s][layers.index(layer)].norm()) for s in seeds])
            rows.append({"vector from": L, "layer": layer, "norm of v": v, "mean norm of prompt states": resid,
                         "ratio": v / resid})
    return pd.DataFrame(rows)


def report(ctx: RunContext, df: pd.DataFrame, norms: pd.DataFrame, gens: pd.DataFrame, src_lang: str,
           langs: list[str]) -> None:
    """Figures (effect vs scale, a line per layer, a panel per language) and a reading of the numbers."""
    e = ctx.cfg.experiment
    figs = []
    for metric, ylabel, h in (("log_odds_shift", "Δ log-odds positive vs negative", 0.0),
                              ("lexicon_shift", "Δ (#pos − #neg held-out lexicon words)", 0.0),
                              ("distinct_tokens", "unique / total generated tokens", None),
                              ("classifier_positive", "classifier P(positive)", None)):
        for vec in sorted(df["vector"].unique()):
            sub = df[df["vector"] == vec]
            if metric in set(sub["metric"]):
                tag = "same" if vec == "same language" else "cross"
                order = [L for L in langs if L in set(sub["lang"])]
                figs.append(effect_figure(sub, ctx.out / f"steer_sentiment_{metric}_{tag}.png", metric, "lang",
                                          f"{metric}, vector {vec}", ylabel, hline=h, panel_order=order))
    lines = []
    for metric in ("log_odds_shift", "lexicon_shift", "classifier_positive"):
        for L in langs:
            parts = []
            for src in dict.fromkeys([src_lang, L]):
                row = best_cell(df[(df["lang"] == L) & (df["src"] == src)], metric)
                if row is not None:
                    parts.append(f"{src}-built vector: best {describe_cell(row)}")
            if parts:
                lines.append(f"- {metric}, prompts in {L}: " + "; ".join(parts))
        for v in df["vector"].unique():
            sub = df[df["vector"] == v]
            if metric in set(sub["metric"]) and not any_effect(sub, metric):
                lines.append(f"- {metric}, vector {v}: no cell has an interval excluding 0 (no detectable effect).")
    lines += cross_reading(df, src_lang)
    lines += degeneration_reading(df)
    text = (f"Model {ctx.cfg.model.name}. Vector = mean state of {e.n_build} positive minus {e.n_build} negative "
            f"lexicon words (read at `{e.read_positions}`), added × scale at layer k (output of block k) at prompt "
            f"positions `{e.positions}` ({e.when}). Measured on held-out words of the prompt's language; seeds "
            f"{list(e.seeds)} pick the building words (generation: seeds "
            f"{list(e.seeds) if e.get('generate_seeds') is None else list(e.generate_seeds)}); intervals are "
            f"{int(100 * float(e.ci))}% bootstrap over prompts (seed-averaged). Shifts are relative to scale 0 on "
            "the same prompts. Best cells = largest mean over nonzero scales. The table gives the vectors' norms "
            "against the prompts' mean residual norm (BOS excluded), i.e. what a scale means.\n\n"
            + "\n".join(lines))
    ctx.report.section("Sentiment steering across languages", text, figures=figs, table=norms)
    table = cross_table(df, src_lang)
    if len(table):
        ctx.report.section(f"{src_lang}-built vs same-language vector on non-{src_lang} prompts",
                           "Mean log-odds shift over the non-English prompt languages, per layer and scale "
                           "(each language's own interval is in results.csv).", table=table)
    if len(gens):
        nz = sorted(s for s in gens["scale"].unique() if s != 0)
        ex = gens[(gens["seed"] == gens["seed"].min()) & (gens["prompt"].isin(gens.groupby("lang")["prompt"].first()))]
        ex = ex[ex["scale"].isin([0.0] + nz[:1] + nz[-1:])]
        mid = sorted(ex["layer"].unique())[ex["layer"].nunique() // 2]
        ex = ex[ex["layer"] == mid].drop_duplicates(["src", "lang", "scale"]).sort_values(["lang", "src", "scale"])
        ctx.report.section(f"Example continuations (greedy, first prompt per language, seed {int(gens['seed'].min())})",
                           "", table=ex[["src", "lang", "layer", "scale", "prompt", "continuation"]])


def cross_table(df: pd.DataFrame, src_lang: str) -> pd.DataFrame:
    """Per (layer, scale): mean log-odds shift over non-source languages, cross vs same-language vector."""
    d = df[(df["metric"] == "log_odds_shift") & (df["lang"] != src_lang) & (df["scale"] != 0)]
    if d.empty:
        return d
    d = d.assign(kind=np.where(d["src"] == src_lang, f"{src_lang}-built", "same-language"),
                 up=d["ci_low"] > 0)
    t = d.pivot_table(index=["layer", "scale"], columns="kind", values="value", aggfunc="mean")
    up = d.pivot_table(index=["layer", "scale"], columns="kind", values="up", aggfunc="sum")
    t.columns = [f"{c}: mean shift" for c in t.columns]
    up.columns = [f"{c}: langs > 0" for c in up.columns]
    return t.join(up.astype(int)).reset_index()


def cross_reading(df: pd.DataFrame, src_lang: str) -> list[str]:
    """Counts of (language, layer, scale) cells where each vector raises or lowers the log-odds."""
    d = df[(df["metric"] == "log_odds_shift") & (df["lang"] != src_lang) & (df["scale"] != 0)]
    if d.empty:
        return []
    out = []
    for name, sub in ((f"{src_lang}-built", d[d["src"] == src_lang]), ("same-language", d[d["src"] != src_lang])):
        out.append(f"- {name} vector on non-{src_lang} prompts: log-odds interval above 0 in "
                   f"{int((sub['ci_low'] > 0).sum())} and below 0 in {int((sub['ci_high'] < 0).sum())} of "
                   f"{len(sub)} (language, layer, scale) cells.")
    return out


def degeneration_reading(df: pd.DataFrame) -> list[str]:
    """Where the steered text degenerates (unique/total tokens well below the unsteered level)."""
    d = df[df["metric"] == "distinct_tokens"]
    if d.empty:
        return []
    base = float(d[d["scale"] == 0]["value"].mean())
    m = d.groupby(["layer", "scale"])["value"].mean()
    bad = [f"layer {k} from scale {s:g}" for k in sorted({k for k, _ in m.index})
           for s in [min((s for (kk, s), v in m.items() if kk == k and s != 0 and v < 0.75 * base), default=None)]
           if s is not None]
    return [f"- Unique/total generated tokens: {base:.2f} unsteered; " + (
        f"below 75% of that (repetitive or broken text) at {', '.join(bad)}: shifts there measure damage as much "
        "as sentiment." if bad else "no (layer, scale) cell falls below 75% of that.")]
