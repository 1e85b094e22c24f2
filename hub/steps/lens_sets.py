"""Lens probabilities of named token sets at the last token of prompts (arithmetic, code, ...).

The adapter hands over :class:`~hub.contract.LensPrompts` (prompts, and per prompt one token
set per name); the step reads every layer through each configured lens (``lens=`` group,
hub.steps.lenses; the logit lens by default) on one capture, adds tidy rows with a ``lens``
column (one ``lang_prob`` curve per set, entropy, optionally token energy), a figure with one
line per (set, lens), and per lens a reading: which set leads which layers, where the hub set
beats the surface set, and whether the answer's own set wins at the output.
"""
from __future__ import annotations

import pandas as pd

from hub.context import RunContext
from hub.contract import LensPrompts
from hub.lens.base import Lens
from hub.lens.readout import states_readout, top_tokens
from hub.plots import layer_curves
from hub.readings import DEFAULT_MIN_PROB, compare_curves, layer_ranges, leads_text, min_prob_of, rule_text
from hub.steps.lenses import configured_lenses, lens_norms, lens_series, per_lens, per_lens_text


def lens_sets(ctx: RunContext, adapter, lt: LensPrompts, *, task: str, tag: str, heading: str, hub_set: str,
              surface_set: str, output_set: str | None = None, lenses: dict[str, Lens] | None = None
              ) -> pd.DataFrame:
    """Lens probabilities of ``lt``'s named token sets at the last token of each prompt, under
    ``lenses`` (else every lens the config selects), one reading per lens."""
    cfg, hm = ctx.cfg, ctx.model
    lenses = lenses if lenses is not None else configured_lenses(cfg, hm, experiment=cfg.experiment.name)
    layers = hm.check_layers(cfg.experiment.layers)
    states = hm.capture(list(lt.prompts), layers=layers, positions="last", batch_size=cfg.batch_size,
                        progress=cfg.progress)  # [n, layer, d], read by every lens
    raw: dict[str, dict] = {}

    def read(name: str, lens: Lens) -> pd.DataFrame:
        rows, raw[name] = states_readout(lens, states, lt.token_sets, lt.set_names, layers,
                                         energy=bool(cfg.experiment.get("energy", False)))
        return rows

    rows = per_lens(lenses, read)
    df = ctx.add(rows.rename(columns={"lang": "set"}).assign(lang=lambda d: d["set"]), task=task,
                 modality=adapter.modality)
    probs, order = lens_series(df[df["metric"] == "lang_prob"], "set")
    fig = layer_curves(probs, ctx.out / f"lens_{tag}.png", group="series", baseline_col=None, title=task,
                       ylabel="lens probability", ylim=(0, 1), group_order=order)
    example = lt.prompts[0].replace("\n", "\n    ")
    min_prob = min_prob_of(cfg)
    readings = per_lens_text(df, lambda d, n: set_reading(d, lt.set_names, hub_set, surface_set, output_set, min_prob)
                             + group_table(lt, raw[n]), block=True)
    text = (f"{len(lt.prompts)} prompts; dropped {dict(lt.drops) or 'none'}. {lens_norms(lenses)}. "
            f"Example prompt:\n\n    {example}\n\n" + readings)
    top = None
    for name, lens in lenses.items():  # one column of top tokens per lens
        t = top_tokens(hm, lt.prompts[0], k=3, lens=lens)
        if len(lenses) > 1:
            t = t.rename(columns={"top tokens (p)": f"{name} lens: top tokens (p)"})
        top = t if top is None else top.merge(t, on="layer")
    ctx.report.section(heading, text + f"\n\nTop lens tokens per layer for the example prompt ({lt.items[0]}):",
                       figures=[fig], table=top)
    return df


def group_table(lt: LensPrompts, raw: dict) -> str:
    """Per prompt group (e.g. operator): mean last-layer probability of each set, and the peak
    over layers of the per-layer mean, as a markdown table ('' without groups)."""
    if not lt.groups:
        return ""
    sp = raw["set_prob"]  # [n, layer, sets]
    lines = ["| group | n | " + " | ".join(f"{s} last (peak)" for s in lt.set_names) + " |",
             "|---|---|" + "---|" * len(lt.set_names)]
    for g in sorted(set(lt.groups)):
        idx = [i for i, x in enumerate(lt.groups) if x == g]
        m = sp[idx].mean(0)  # [layer, sets]
        cells = [f"{_p(float(m[-1, j]))} ({_p(float(m[:, j].max()))})" for j in range(len(lt.set_names))]
        lines.append(f"| {g} | {len(idx)} | " + " | ".join(cells) + " |")
    return "\n\nBy group (mean lens probability at the last layer, and its peak over layers):\n\n" + "\n".join(lines)


def _p(v: float) -> str:
    return f"{v:.3f}" if v >= 0.001 or v == 0 else f"{v:.1e}"


def set_reading(df: pd.DataFrame, names: list[str], hub_set: str, surface_set: str,
                output_set: str | None = None, min_prob: float = DEFAULT_MIN_PROB) -> str:
    """Peak and last-layer probability per set; the layers each set leads; where the hub set
    beats the surface set with separated 95% intervals; and, when the prompt's answer is a
    set (``output_set``), whether that set wins at the last layer. Every layer count follows
    the materiality rule of hub.readings: a lead counts only where the leading probability
    is >= ``min_prob`` (leading a layer at 1e-5 is not a readout)."""
    p = df[df["metric"] == "lang_prob"].pivot_table(index="layer", columns="set", values=["value", "ci_low", "ci_high"])
    v = p["value"]
    last = int(v.index.max())
    lines = ["| set | peak (layer) | last layer | layers where it leads (prob ≥ " + _p(min_prob) + ") |",
             "|---|---|---|---|"]
    leader = v[names].idxmax(axis=1)
    for n in names:
        lead = [int(k) for k in v.index if leader[k] == n and v.loc[k, n] >= min_prob]
        lines.append(f"| {n} | {_p(v[n].max())} ({int(v[n].idxmax())}) | {_p(v.loc[last, n])} | {layer_ranges(lead)} |")
    sets = {n: p.xs(n, axis=1, level="set") for n in names}
    hs = compare_curves(sets[hub_set], sets[surface_set], min_prob)
    others = [n for n in names if n not in (hub_set, surface_set)]
    beats = [set(compare_curves(sets[hub_set], sets[o], min_prob).a) for o in others]
    hub_over_all = [k for k in hs.a if all(k in b for b in beats)]
    s = (leads_text(hs, f"p({hub_set})", f"p({surface_set})") + f" Material layers where {hub_set} also beats "
         f"every other set ({', '.join(others) or 'none'}): {layer_ranges(hub_over_all)}.")
    hub_peak = float(v[hub_set].max())
    if hub_peak < min_prob:
        s += (f" p({hub_set}) never reaches {_p(min_prob)} (peak {_p(hub_peak)}, layer {int(v[hub_set].idxmax())}): "
              f"the lens puts negligible mass on {hub_set} at any layer, so there is no {hub_set} readout here.")
    if output_set is not None:
        mid = [k for k in hub_over_all if 0 < k < last]
        out_wins = all(p["ci_low"].loc[last, output_set] > p["ci_high"].loc[last, o] for o in names if o != output_set)
        if mid and out_wins:
            s += f" This is the hub pattern: {hub_set} leads intermediate layers, {output_set} wins at the output."
        elif out_wins:
            s += (f" {output_set} wins at the output (p = {_p(v.loc[last, output_set])}), but {hub_set} never "
                  f"leads an intermediate layer with p ≥ {_p(min_prob)}: no hub pattern on this model.")
        else:
            s += (f" {output_set} (the answer's written form) does not clearly win at the output on this model: "
                  "no hub pattern.")
    return "\n".join(lines) + "\n\n" + s + " " + rule_text(min_prob)
