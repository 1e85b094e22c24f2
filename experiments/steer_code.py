"""Code steering with an unembedding direction (semantic-hub paper, Sec. 5: interventions).

Method. Prompts are Python snippets that end inside a call, ``... range(``. The steering
vector is an English word direction read off the output embedding, v = W_U["start"] − W_U["end"],
added as s · v to the output of block k (at the last prompt position and at every generated
token by default). If the middle layers hold a shared semantic space that reads out through
the unembedding, pushing "start" should make the model write the start argument explicitly: success = the
generated call starts at 0 (``range(0, n)``), or at least names a start. ``unit: resid``
rescales v to the mean residual norm of the prompts at layer k, so a scale is a fraction of
the state's norm and comparable across layers;
``unit: raw`` uses literal multiples of W_U["start"] − W_U["end"]. Measures per (layer, scale):
the rate of calls whose first argument is ``0`` and of calls with any explicit start (each also
as a paired change from the unsteered continuation), the rate of continuations that contain the
word "start" itself (the direction acting as a token to emit rather than as a meaning), and the
shift of the next-token log-probability of ``0`` from scale 0.
"""
from __future__ import annotations

import pandas as pd
from tqdm.auto import tqdm

from hub.context import RunContext
from hub.errors import UserError
from hub.intervene import (Intervention, generate_with, mean_state_norm, next_token_logprobs_with, token_id,
                           unembedding_direction)
from hub.steps.steering import (any_effect, best_cell, describe_cell, effect_figure, resolve_layers,
                                summarise)


def call_arguments(continuation: str) -> list[str] | None:
    """Top-level arguments of the call the prompt opened, or None if it never closes."""
    depth, args, cur = 0, [], []
    for ch in continuation:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                args.append("".join(cur).strip())
                return [a for a in args if a] if any(args) else []
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    return None


METRICS = ["zero_start", "zero_start_shift", "explicit_start", "explicit_start_shift", "literal_token",
           "logp_zero_shift"]


def call_measures(continuation: str, literal: str) -> dict[str, float]:
    """Does the call start at 0 / give a start at all / contain the steering word itself?"""
    args = call_arguments(continuation)
    two = args is not None and len(args) >= 2
    return {"zero_start": float(two and args[0] == "0"), "explicit_start": float(two),
            "literal_token": float(literal.lower() in continuation.lower())}


def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg.experiment, ctx.model
    layers, scales = resolve_layers(hm, list(cfg.layers)), [float(s) for s in cfg.scales]
    prompts, bs = list(cfg.prompts), int(ctx.cfg.batch_size)
    v = unembedding_direction(hm, cfg.token_a, cfg.token_b)
    zero = token_id(hm, str(cfg.zero_token))
    if cfg.unit not in ("raw", "resid"):
        raise UserError(f"experiment.unit={cfg.unit!r}: expected 'raw' or 'resid'")
    unit = {k: (mean_state_norm(hm, prompts, k, "last", bs) / float(v.norm()) if cfg.unit == "resid" else 1.0)
            for k in layers}
    base_lp = next_token_logprobs_with(hm, prompts, None, token_ids=[zero], batch_size=bs)[:, 0]
    base_txt = generate_with(hm, prompts, None, int(cfg.max_new_tokens), batch_size=bs)
    units, gens = [], []
    for layer in tqdm(layers, desc="steer_code", disable=not ctx.cfg.progress):
        for scale in scales:
            if scale == 0:
                lp, txt = base_lp, base_txt
            else:
                iv = Intervention(v * unit[layer], layer, cfg.positions, scale)
                lp = next_token_logprobs_with(hm, prompts, iv, token_ids=[zero], batch_size=bs)[:, 0]
                txt = generate_with(hm, prompts, iv, int(cfg.max_new_tokens), when=cfg.when, batch_size=bs)
            for i, t in enumerate(txt):
                units.append({"layer": layer, "scale": scale, "prompt": i, **call_measures(t, str(cfg.token_a)),
                              "logp_zero_shift": float(lp[i] - base_lp[i])})
                gens.append({"layer": layer, "scale": scale, "prompt": prompts[i], "continuation": t})
    u = pd.DataFrame(units)
    for m in ("zero_start", "explicit_start"):  # paired change from the unsteered continuation
        base = u[u["scale"] == 0].set_index(["layer", "prompt"])[m]
        u[f"{m}_shift"] = u[m].to_numpy() - base.reindex(pd.MultiIndex.from_frame(u[["layer", "prompt"]])).to_numpy()
    df = summarise(u, ["layer", "scale"], METRICS, unit="prompt", ci=float(cfg.ci), n_boot=int(cfg.n_boot),
                   seed=int(ctx.cfg.seed), average_over=None)
    df = ctx.add(df.drop(columns="seed_sd"), task="code", src="en")
    report(ctx, df, pd.DataFrame(gens), unit, float(v.norm()))
    return df


def report(ctx: RunContext, df: pd.DataFrame, gens: pd.DataFrame, unit: dict, vnorm: float) -> None:
    cfg = ctx.cfg.experiment
    figs = [effect_figure(df, ctx.out / f"steer_code_{m}.png", m, None, m, ylabel, hline=h)
            for m, ylabel, h in (("zero_start", "P(call is range(0, ...))", None),
                                 ("explicit_start", "P(call has a start argument)", None),
                                 ("literal_token", f"P(continuation contains {cfg.token_a!r})", None),
                                 ("logp_zero_shift", "Δ log p('0') at the open call", 0.0))]

    def at0(m):
        v = df[(df["metric"] == m) & (df["scale"] == 0)]["value"]
        return float(v.iloc[0]) if len(v) else float("nan")
    lines = [f"- Unsteered: {at0('zero_start'):.0%} of calls start at 0, {at0('explicit_start'):.0%} give a start "
             f"argument, {at0('literal_token'):.0%} contain {cfg.token_a!r}."]
    for m in ("zero_start_shift", "explicit_start_shift", "logp_zero_shift"):
        up, down = best_cell(df, m, +1), best_cell(df, m, -1)
        if up is not None:
            none = "" if any_effect(df, m) else "; no cell has an interval excluding 0 (no detectable effect)."
            lines.append(f"- {m}: largest increase {describe_cell(up)}; largest decrease {describe_cell(down)}{none}")
    lit = df[(df["metric"] == "literal_token") & (df["scale"] != 0)]
    if len(lit):
        row = lit.loc[lit["value"].idxmax()]
        lines.append(f"- The steered text contains {cfg.token_a!r} itself in up to {row['value']:.0%} of "
                     f"continuations (layer {int(row['layer'])}, scale {row['scale']:g}): where that is high the "
                     "direction acts as a token to emit, not as the meaning 'start'.")
    text = (f"Model {ctx.cfg.model.name}. v = W_U[{cfg.token_a!r}] − W_U[{cfg.token_b!r}] (|v| = {vnorm:.3f}), "
            f"unit `{cfg.unit}` (layer: multiplier {', '.join(f'{k}: {x:.1f}' for k, x in unit.items())}), added × "
            f"scale at layer k (output of block k) at positions `{cfg.positions}` ({cfg.when}); "
            f"{len(gens['prompt'].unique())} prompts, greedy {cfg.max_new_tokens} tokens. Shifts are paired "
            f"against the unsteered continuation of the same prompt. Intervals: {int(100 * float(cfg.ci))}% "
            "bootstrap over prompts.\n\n" + "\n".join(lines))
    ctx.report.section("Code steering with W_U[start] − W_U[end]", text, figures=figs)
    nz = sorted(s for s in gens["scale"].unique() if s != 0)
    mid = sorted(gens["layer"].unique())[len(gens["layer"].unique()) // 2]
    ex = gens[(gens["layer"] == mid) & gens["scale"].isin([0.0] + nz[:1] + nz[-1:])]
    ctx.report.section(f"Example continuations (layer {mid})", "", table=ex[["scale", "prompt", "continuation"]])
