"""Arithmetic steering from number words (semantic-hub paper, Sec. 5: interventions).

Method. Each item is a triple (a, b, b') whose answers f(a, b) and f(a, b') are single digits.
The default prompt asks for the missing addend in digits, ``a=b+`` (after a few solved
examples), so f(a, b) = a − b; ``answer`` and the templates configure other forms (``a+b=``).
The steering vector comes from *words*: v = h("a equals b' plus") − h("a equals b plus") at
layer k (last token, number words written by ``modalities.numbers``). Adding s · v to the
output of block k at the prompt's last position tests whether the digit computation reads the
operand from a shared, language-independent representation: success means the greedy next
token is f(a, b') (the answer computed with the changed operand), not f(a, b). Controls:
scale 0, and a random direction with the norm of each item's v. Measures per (layer, scale):
success rate, original-answer rate, and the shift of log p(f(a, b')) − log p(f(a, b)) from
scale 0. A model that cannot solve the unsteered prompt gives no evidence either way; the
report states its scale-0 accuracy first.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from hub.context import RunContext
from hub.errors import UserError
from hub.intervene import Intervention, next_token_logprobs_with, token_id
from hub.models import HubModel
from hub.results import atomic_write_text
from hub.steps.steering import (any_effect, best_cell, describe_cell, effect_figure, resolve_layers,
                                summarise)
from modalities.numbers import number_word


ANSWERS = {"a-b": lambda a, b: a - b, "a+b": lambda a, b: a + b, "b-a": lambda a, b: b - a,
           "a*b": lambda a, b: a * b}


def make_items(answer: str, a_range: tuple[int, int], b_range: tuple[int, int], n_items: int, seed: int,
               exclude: set[tuple[int, int]] = frozenset()) -> list[tuple[int, int, int]]:
    """Random distinct (a, b, b'), b != b', both answers single digits, (a, b) not in ``exclude``."""
    if answer not in ANSWERS:
        raise UserError(f"answer={answer!r}: expected one of {list(ANSWERS)}")
    if n_items < 1:
        raise UserError(f"n_items={n_items}: expected at least 1")
    f = ANSWERS[answer]
    As, Bs = range(a_range[0], a_range[1] + 1), range(b_range[0], b_range[1] + 1)
    pool = [(a, b, c) for a in As for b in Bs for c in Bs
            if b != c and (a, b) not in exclude and 0 <= f(a, b) <= 9 and 0 <= f(a, c) <= 9]
    if not pool:
        raise UserError(f"no items with single-digit answers for answer={answer}, a in {a_range}, b in {b_range}")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(pool))[:n_items]
    return [pool[i] for i in sorted(idx)]


def shot_pairs(shots: list[str], template: str, a_range, b_range) -> set[tuple[int, int]]:
    """The (a, b) whose prompt starts one of the few-shot examples (kept out of the items)."""
    return {(a, b) for a in range(a_range[0], a_range[1] + 1) for b in range(b_range[0], b_range[1] + 1)
            if any(e.startswith(template.format(a=a, b=b)) for e in shots)}


def item_vectors(hm: HubModel, items, template: str, lang: str, layers: list[int], positions: str, bs: int
                 ) -> torch.Tensor:
    """``[item, layer, d]``: h(template with b') − h(template with b), number words in ``lang``."""
    def text(a, b):
        return template.format(a=number_word(a, lang), b=number_word(b, lang))
    new = hm.capture([text(a, c) for a, b, c in items], layers=layers, positions=positions, batch_size=bs)
    old = hm.capture([text(a, b) for a, b, c in items], layers=layers, positions=positions, batch_size=bs)
    return new - old


def specific_effect(u: pd.DataFrame) -> pd.DataFrame:
    """Per item: operand-word vector minus random vector at the same layer and scale (paired).

    Any large push disrupts the model and lowers p(f(a, b)), which alone raises the log-prob
    difference; the paired difference keeps only what the operand direction adds.
    """
    if "random" not in set(u["vector"]):
        return u.iloc[:0]
    keys = ["layer", "scale", "item"]
    ow = u[u["vector"] == "operand words"].set_index(keys)
    rd = u[u["vector"] == "random"].set_index(keys)
    cols = ["success", "original", "logit_diff_shift"]
    d = (ow[cols] - rd.loc[ow.index, cols]).reset_index()
    d["vector"] = "operand words − random"
    return d


def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg.experiment, ctx.model
    layers, scales = resolve_layers(hm, list(cfg.layers)), [float(s) for s in cfg.scales]
    bs = int(ctx.cfg.batch_size)
    shots = list(cfg.few_shot)
    a_range, b_range = tuple(cfg.a_range), tuple(cfg.b_range)
    items = make_items(cfg.answer, a_range, b_range, int(cfg.n_items), int(ctx.cfg.seed),
                       shot_pairs(shots, cfg.template, a_range, b_range))
    f = ANSWERS[cfg.answer]
    prefix = "".join(f"{e}{cfg.separator}" for e in shots)
    prompts = [prefix + cfg.template.format(a=a, b=b) for a, b, c in items]
    digit = [token_id(hm, str(d)) for d in range(10)]
    vecs = item_vectors(hm, items, cfg.source_template, cfg.source_lang, layers, cfg.read_positions, bs)
    gen = torch.Generator().manual_seed(int(ctx.cfg.seed))
    rand = torch.randn(vecs.shape, generator=gen)
    rand = rand / rand.norm(dim=-1, keepdim=True) * vecs.norm(dim=-1, keepdim=True)
    kinds = {"operand words": vecs} | ({"random": rand} if "random" in cfg.controls else {})

    base = next_token_logprobs_with(hm, prompts, None, batch_size=bs)  # [n, vocab]
    units = []

    def record(kind, layer, scale, i, lp):
        a, b, c = items[i]
        new, old = digit[f(a, c)], digit[f(a, b)]
        top = int(lp.argmax())
        ld, ld0 = float(lp[new] - lp[old]), float(base[i, new] - base[i, old])
        units.append({"vector": kind, "layer": layer, "scale": scale, "item": i, "a": a, "b": b, "b_new": c,
                      "success": float(top == new), "original": float(top == old),
                      "logit_diff_shift": ld - ld0, "top": hm.tokenizer.decode([top])})

    jobs = [(k, layer, s) for k in kinds for layer in layers for s in scales]
    for kind, layer, scale in tqdm(jobs, desc="steer_arithmetic", disable=not ctx.cfg.progress):
        li = layers.index(layer)
        for i, p in enumerate(prompts):
            if scale == 0:
                lp = base[i]
            else:
                iv = Intervention(kinds[kind][i, li], layer, cfg.positions, scale)
                lp = next_token_logprobs_with(hm, [p], iv)[0]
            record(kind, layer, scale, i, lp)
    u = pd.DataFrame(units)
    atomic_write_text(ctx.out / "items.csv", u.to_csv(index=False))
    u = pd.concat([u, specific_effect(u)], ignore_index=True)
    df = summarise(u, ["vector", "layer", "scale"], ["success", "original", "logit_diff_shift"], unit="item",
                   ci=float(cfg.ci), n_boot=int(cfg.n_boot), seed=int(ctx.cfg.seed), average_over=None)
    df = ctx.add(df.drop(columns="seed_sd"), task="arithmetic", src=str(cfg.source_lang))
    report(ctx, df, u, prompts, items, vecs, layers)
    return df


def report(ctx: RunContext, df: pd.DataFrame, u: pd.DataFrame, prompts, items, vecs, layers) -> None:
    """Figures (a panel per vector kind) and a reading of the numbers."""
    cfg = ctx.cfg.experiment
    order = [v for v in ("operand words", "random", "operand words − random") if v in set(df["vector"])]
    figs = [effect_figure(df, ctx.out / f"steer_arithmetic_{m}.png", m, "vector", m, ylabel,
                          hline=None if m != "logit_diff_shift" else 0.0, panel_order=order)
            for m, ylabel in (("success", "P(next token = f(a, b'))"), ("original", "P(next token = f(a, b))"),
                              ("logit_diff_shift", "Δ [log p(f(a,b')) − log p(f(a,b))]"))]
    norms = pd.DataFrame({"layer": layers, "mean norm of v": vecs.norm(dim=-1).mean(0).tolist()})
    text = (f"Model {ctx.cfg.model.name}. Prompt e.g. `{prompts[0]!r}`; vector = h(\"{cfg.source_template}\" "
            f"with b') − h(... with b) in {cfg.source_lang} number words, read at `{cfg.read_positions}`, added × "
            f"scale at layer k (output of block k) at prompt positions `{cfg.positions}`. Success = greedy next "
            f"token is f(a, b') = {cfg.answer} with b'. Intervals: {int(100 * float(cfg.ci))}% bootstrap over "
            "items.\n\n" + "\n".join(reading(df, len(items), str(cfg.answer), order)))
    ctx.report.section("Arithmetic steering from number words", text, figures=figs, table=norms)


def reading(df: pd.DataFrame, n_items: int, answer: str, order: list[str]) -> list[str]:
    """Short factual lines: baseline accuracy, best cells, and the effect beyond a random direction."""
    def cells(kind, metric):
        return df[(df["vector"] == kind) & (df["metric"] == metric) & (df["scale"] != 0)]
    base = df[(df["metric"] == "original") & (df["scale"] == 0) & (df["vector"] == "operand words")]
    acc = float(base["value"].iloc[0]) if len(base) else float("nan")
    chance = float(df[(df["metric"] == "success") & (df["scale"] == 0) & (df["vector"] == "operand words")]
                   ["value"].mean())
    lines = [f"- Unsteered (scale 0): the model answers f(a, b) = {answer} on {acc:.0%} of {n_items} items and "
             f"f(a, b') on {chance:.0%}."]
    if acc < 0.3:
        lines.append("- The model rarely solves the unsteered prompt, so success rates cannot show it computing "
                     "with the changed operand; only the log-probability shifts carry information here.")
    for kind in order:
        for m in ("success", "logit_diff_shift"):
            row = best_cell(df[df["vector"] == kind], m)
            if row is not None:
                lines.append(f"- {kind}, {m}: best {describe_cell(row)}")
    ow, rd = cells("operand words", "success"), cells("random", "success")
    if len(ow) and len(rd):
        lines.append(f"- Best success rate: operand-word vector {ow['value'].max():.0%} vs random direction of the "
                     f"same norm {rd['value'].max():.0%} (scale 0: {chance:.0%}).")
    diff = cells("operand words − random", "logit_diff_shift")
    if len(diff):
        up, down = diff[diff["ci_low"] > 0], diff[diff["ci_high"] < 0]
        best = best_cell(diff, "logit_diff_shift")
        lines.append(
            "- Specific effect (operand words − random, paired over items) on log p(f(a,b')) − log p(f(a,b)): "
            f"interval above 0 in {len(up)} and below 0 in {len(down)} of {len(diff)} (layer, scale) cells; "
            f"largest {describe_cell(best)}." + ("" if len(up) else " No specific effect of the operand words."))
    return lines
