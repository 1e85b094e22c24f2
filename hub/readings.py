"""Which layers a lens reading counts: the one materiality rule of every layer-counting reading.

A logit-lens reading compares two probability curves per layer (English vs the target word,
a hub token set vs the surface one, caption nouns vs unrelated nouns). Where both are tiny
(p(en) = 8e-4 "beating" p(zh) = 3e-4 with separated intervals), the difference is real but
not what a reader sees in the figure, nor evidence of a readout in either language. So:

**Materiality rule.** A layer is *material* when the larger of the compared probabilities
is at least ``min_prob`` (absolute, ``reading.min_prob`` in conf/config.yaml, default 0.01:
1% of the next-token mass). A curve *leads* at a layer only where the layer is material and
its probability exceeds the other's (with separated 95% intervals where intervals are
given). Leads below the threshold are kept apart (``*_immaterial``) and reported as not
counted. A reading can therefore say that a pattern does not appear: when the target leads
at every material layer, or when no layer is material at all.

``curves``: frames indexed by layer with a ``value`` column (and ``ci_low``/``ci_high``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

DEFAULT_MIN_PROB = 0.01


def min_prob_of(cfg) -> float:
    """``reading.min_prob`` from a run config (default 0.01); one clear error for a bad value."""
    reading = (cfg.get("reading") if cfg is not None else None) or {}
    v = reading.get("min_prob", DEFAULT_MIN_PROB)
    try:
        v = float(v)
    except (TypeError, ValueError):
        v = float("nan")
    if not 0.0 < v < 1.0:
        raise ValueError(f"reading.min_prob={reading.get('min_prob')!r}: expected a probability in (0, 1), "
                         "e.g. 0.01")
    return v


def rule_text(min_prob: float) -> str:
    """The rule as one sentence for report text."""
    return (f"Materiality rule: a layer is counted only where the leading probability is ≥ {min_prob:g} "
            "(reading.min_prob); leads below that are named as not counted.")


def layer_ranges(layers: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1–3, 7"``; ``[]`` -> ``"none"``."""
    layers = sorted(int(k) for k in layers)
    if not layers:
        return "none"
    out, start = [], layers[0]
    for prev, k in zip(layers, layers[1:] + [None]):
        if k != prev + 1:
            out.append(f"{start}" if start == prev else f"{start}–{prev}")
            start = k
    return ", ".join(out)


@dataclass
class Leads:
    """Per-layer comparison of curve ``a`` with curve ``b`` under the materiality rule."""

    min_prob: float
    layers: list[int]
    material: list[int] = field(default_factory=list)  # max(p_a, p_b) >= min_prob
    a: list[int] = field(default_factory=list)  # material layers where a leads
    b: list[int] = field(default_factory=list)  # material layers where b leads
    a_immaterial: list[int] = field(default_factory=list)  # a leads, but below min_prob: not counted
    b_immaterial: list[int] = field(default_factory=list)


def compare_curves(a: pd.DataFrame, b: pd.DataFrame, min_prob: float = DEFAULT_MIN_PROB,
                   separated: bool = True) -> Leads:
    """Where ``a`` leads ``b`` and vice versa, counting only material layers.

    ``separated``: a lead needs ``a.ci_low > b.ci_high`` (else ``a.value > b.value``)."""
    layers = [int(k) for k in a.index if k in b.index]
    out = Leads(min_prob, layers)
    for k in layers:
        va, vb = float(a.loc[k, "value"]), float(b.loc[k, "value"])
        material = max(va, vb) >= min_prob
        if material:
            out.material.append(k)
        if separated:
            a_wins = float(a.loc[k, "ci_low"]) > float(b.loc[k, "ci_high"])
            b_wins = float(b.loc[k, "ci_low"]) > float(a.loc[k, "ci_high"])
        else:
            a_wins, b_wins = va > vb, vb > va
        if a_wins:
            (out.a if va >= min_prob else out.a_immaterial).append(k)
        elif b_wins:
            (out.b if vb >= min_prob else out.b_immaterial).append(k)
    return out


def curve(df: pd.DataFrame, name: str, key: str = "lang", metric: str | None = "lang_prob") -> pd.DataFrame:
    """The rows of one series (``df[key] == name``, optionally one metric) indexed by layer."""
    d = df if metric is None else df[df["metric"] == metric]
    d = d[d[key] == name]
    if d.empty:
        raise ValueError(f"no {metric or 'value'} rows with {key}={name!r} to read")
    if d["layer"].duplicated().any():
        raise ValueError(f"{key}={name!r}: several {metric or 'value'} rows per layer; select one run's rows first")
    return d.set_index("layer").sort_index()


def pattern_reading(leads: Leads, latent: str, target: str, who: str = "Wendler et al.") -> str:
    """Does ``latent`` lead some material intermediate layer while ``target`` wins the last one?

    Says so, or says that the pattern does not appear and why (never material; the target
    leads at every material layer; the latent language leads nowhere; the target does not win
    at the end). ``leads`` compares latent (a) with target (b)."""
    if not leads.layers:
        return "No layers to read."
    last = leads.layers[-1]
    mid = [k for k in leads.a if 0 < k < last]
    target_last = last in leads.b
    if not leads.material:
        return (f"Neither p({latent}) nor p({target}) reaches {leads.min_prob:g} at any layer: the lens puts "
                f"negligible mass on both, so the pattern {who} report does not appear here (nor its opposite).")
    if mid and target_last:
        return (f"This is the pattern {who} report: {latent} leads material intermediate layers "
                f"({layer_ranges(mid)}) and {target} wins at the last layer.")
    if mid:
        return (f"{latent} leads material intermediate layers ({layer_ranges(mid)}), but {target} does not clearly "
                f"win at the last layer: only half of the pattern {who} report.")
    if leads.b and not leads.a:
        s = (f"The pattern {who} report does not appear: {target} leads at every material layer where one "
             f"language leads ({layer_ranges(leads.b)}); {latent} leads none with p ≥ {leads.min_prob:g}.")
    else:
        s = (f"The pattern {who} report does not appear: {latent} leads no intermediate layer with "
             f"p ≥ {leads.min_prob:g}.")
    if not target_last:
        s += f" {target} does not clearly win at the last layer either."
    return s


def leads_text(leads: Leads, a: str, b: str, how: str = "with separated 95% intervals") -> str:
    """'Layers where a > b (how): ...; where b > a: ...' with the uncounted leads named."""
    s = (f"Material layers where {a} > {b} {how}: {layer_ranges(leads.a)}; where {b} > {a}: "
         f"{layer_ranges(leads.b)}.")
    extra = [f"{n} at {layer_ranges(v)}" for n, v in ((a, leads.a_immaterial), (b, leads.b_immaterial)) if v]
    if extra:
        s += f" Not counted (leading probability < {leads.min_prob:g}): " + "; ".join(extra) + "."
    return s


def series_leads(curves: dict[str, pd.DataFrame], min_prob: float = DEFAULT_MIN_PROB,
                 separated: bool = True) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Which of several curves leads each layer, under the materiality rule.

    At a layer (one all curves have) the curve with the largest value leads when it is
    material (≥ ``min_prob``) and, with ``separated``, its ``ci_low`` exceeds every other
    curve's ``ci_high`` (else: strictly above every other value). Returns ``(leads,
    immaterial)``: per name, the layers it leads, and those it leads below ``min_prob``
    (not counted). Two curves give :func:`compare_curves`'s ``a``/``b`` lists."""
    names = list(curves)
    if len(names) < 2:
        raise ValueError(f"series_leads: need at least two curves, got {names}")
    layers = sorted(set.intersection(*(set(int(k) for k in c.index) for c in curves.values())))
    leads: dict[str, list[int]] = {n: [] for n in names}
    immaterial: dict[str, list[int]] = {n: [] for n in names}
    for k in layers:
        vals = {n: float(curves[n].loc[k, "value"]) for n in names}
        top = max(names, key=lambda n: vals[n])
        others = [n for n in names if n != top]
        if separated:
            wins = all(float(curves[top].loc[k, "ci_low"]) > float(curves[n].loc[k, "ci_high"]) for n in others)
        else:
            wins = all(vals[top] > vals[n] for n in others)
        if wins:
            (leads if vals[top] >= min_prob else immaterial)[top].append(k)
    return leads, immaterial
