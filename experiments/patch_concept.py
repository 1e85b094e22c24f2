"""Where is the concept fixed, where is the language? (Dumas et al. 2024/2025, "Separating Tongue from Thought").

Method. Two few-shot translation tasks in the format of the latent-language experiment: a
*source* task translating concept Cs from language A into B, and a *target* task translating
a different concept Ct from X into Y (B ≠ Y). The source prompt's last-token residual states
are captured at every layer. The target prompt is then run with its last-token residual
replaced by the source state at layer k (``span`` layers from k; default 1), for every k, and
the model's next-token distribution is read: p(Cs in Y), p(Cs in B), p(Ct in Y) and p(Ct in B), each the summed
probability over that word's token set. Pairs whose four token sets overlap are dropped and
counted. If the model first fixes a language-agnostic concept and only later the output
language, patching middle layers moves the concept but keeps the target's language
(p(Cs in Y) high), and patching late layers moves both (p(Cs in B) high).

Why one layer by default: patching every layer from k to the last overwrites the last
block's output at the last token, and the next-token distribution depends on that state
alone, so every k would give the source prompt's own output (tested, and seen on Gemma-3-270m:
the four curves are flat). ``span: null`` keeps that variant; any span ending before the
last layer leaves the later layers free to read the target's context.

Mean over languages: the source states are replaced by the mean of Cs's states over several
source languages A₁..Aₘ (all translating into B). A language-agnostic concept representation
predicts that p(Cs in Y) does not drop. Controls: the states of a random third concept
(p(Cs in ·) must stay low) and the target prompt's own states (a no-op).
"""
from __future__ import annotations

import random

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate

from hub.context import RunContext
from hub.errors import UserError
from hub.lens.tokensets import token_set
from hub.patching import patch_last_token
from hub.plots import layer_curves
from hub.readings import layer_ranges, min_prob_of, rule_text
from hub.stats import mean_ci
from modalities.text import load_parallel

SETS = ["Cs in Y", "Cs in B", "Ct in Y", "Ct in B"]


def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg, ctx.model
    ex = cfg.experiment
    adapter = instantiate(cfg.modality)
    tok = hm.tokenizer
    src_task = adapter.lens_task("translation", ex.source.src, ex.source.tgt, tok)  # A -> B, concept Cs
    tgt_task = adapter.lens_task("translation", ex.target.src, ex.target.tgt, tok)  # X -> Y, concept Ct
    B, Y = str(ex.source.tgt), str(ex.target.tgt)
    if B == Y:
        raise UserError(f"experiment.source.tgt and experiment.target.tgt are both {B!r}: expected two "
                         "different output languages, or language and concept cannot be told apart")
    words = load_parallel(adapter.words_path, [B, Y], id_column="concept", single_word=True)
    word = {(c, lang): w for lang in (B, Y) for c, w in zip(words.ids, words.column(lang))}
    src_prompt = dict(zip(src_task.items, src_task.prompts))
    mean_prompts = _mean_language_prompts(adapter, ex.mean_langs, B, tok)
    shared = [c for c in tgt_task.items if c in src_prompt and all(c in p for p in mean_prompts.values())
              and (c, B) in word and (c, Y) in word]
    rng = random.Random(cfg.seed)
    pairs, drops = _make_pairs(shared, word, B, Y, tok, rng)
    if ex.max_pairs and len(pairs) > ex.max_pairs:
        pairs = rng.sample(pairs, ex.max_pairs)
    if len(pairs) < 2:
        raise UserError(f"patching: only {len(pairs)} usable concept pairs for {ex.source.src}->{B} into "
                         f"{ex.target.src}->{Y} after dropping {dict(drops)}: expected at least 2")
    tgt_prompt = dict(zip(tgt_task.items, tgt_task.prompts))
    targets = [tgt_prompt[ct] for ct, _, _ in pairs]
    sets = [[list(token_set(tok, word[(cs, Y)])), list(token_set(tok, word[(cs, B)])),
             list(token_set(tok, word[(ct, Y)])), list(token_set(tok, word[(ct, B)]))] for ct, cs, _ in pairs]

    def states(prompts: list[str]) -> torch.Tensor:  # [n, L+1, d] last-token states, fp32
        return hm.capture(prompts, layers="all", positions="last", batch_size=cfg.batch_size,
                          progress=cfg.progress).float()

    L = hm.n_layers
    starts = list(range(L + 1)) + [L + 1]  # L+1: unpatched
    sources = {
        "source": states([src_prompt[cs] for _, cs, _ in pairs]),
        "mean over languages": torch.stack([states([mean_prompts[a][cs] for _, cs, _ in pairs])
                                            for a in mean_prompts]).mean(0),
        "random concept": states([src_prompt[cr] for _, _, cr in pairs]),
        "own states": states(targets),
    }
    frames = []
    for name, src in sources.items():
        p = patch_last_token(hm, targets, src, starts, sets, span=ex.span,
                             batch_size=cfg.batch_size).numpy()  # [n, starts, 4]
        frames.append(_rows(p, starts, L, name))
    df = ctx.add(pd.concat(frames, ignore_index=True), task="patching", src=f"{ex.source.src}->{B}",
                 tgt=f"{ex.target.src}->{Y}", modality="text")
    _report(ctx, df, pairs, drops, B, Y, L, ex.span)
    return df


def _mean_language_prompts(adapter, langs, B: str, tok) -> dict[str, dict[str, str]]:
    """Per source language A_i (≠ B), concept -> prompt translating it into B."""
    out = {}
    for a in langs:
        if a == B:
            continue
        lt = adapter.lens_task("translation", a, B, tok)
        out[a] = dict(zip(lt.items, lt.prompts))
    if not out:
        raise UserError(f"experiment.mean_langs={list(langs)} holds no language other than {B!r}")
    return out


def _make_pairs(concepts, word, B, Y, tok, rng) -> tuple[list[tuple[str, str, str]], dict]:
    """(Ct, Cs, Cr) triples of distinct concepts whose four read-out token sets are disjoint."""
    drops: dict[str, int] = {}
    order = list(concepts)
    rng.shuffle(order)
    pairs = []
    for i, ct in enumerate(order):
        cs, cr = order[(i + 1) % len(order)], order[(i + 2) % len(order)]
        sets = [token_set(tok, word[(c, lang)]) for c in (cs, ct) for lang in (Y, B)]
        if any(not s for s in sets):
            drops["empty token set"] = drops.get("empty token set", 0) + 1
            continue
        if any(sets[a] & sets[b] for a in range(4) for b in range(a + 1, 4)):
            drops["overlapping token sets"] = drops.get("overlapping token sets", 0) + 1
            continue
        pairs.append((ct, cs, cr))
    return pairs, drops


def _rows(p: np.ndarray, starts: list[int], L: int, source: str) -> pd.DataFrame:
    rows = []
    for s, name in enumerate(SETS):
        m, lo, hi = mean_ci(p[:, :, s], bounds=(0.0, 1.0))
        for j, k in enumerate(starts):  # the unpatched run (k = L+1) is reported at the output layer L
            rows.append({"metric": "patched_prob" if k <= L else "unpatched_prob", "lang": name,
                         "layer": min(k, L),
                         "value": m[j], "ci_low": lo[j], "ci_high": hi[j],
                         "n": p.shape[0], "source": source})
    return pd.DataFrame(rows)


def _report(ctx: RunContext, df: pd.DataFrame, pairs, drops, B: str, Y: str, L: int, ex_span: int | None) -> None:
    min_prob = min_prob_of(ctx.cfg)
    cur = df[df["metric"] == "patched_prob"]
    base = df[df["metric"] == "unpatched_prob"]
    fig = layer_curves(cur, ctx.out / "patching_probs.png", group="lang", panels="source", baseline_col=None,
                       title=f"patch {'layers k..L' if ex_span is None else f'{ex_span} layer(s) from k'}; Y={Y}, B={B}", ylabel="probability", ylim=(0, 1),
                       x="layer", ncols=2)
    lines = [f"{len(pairs)} (target concept, source concept) pairs; dropped {drops or 'none'}. "
             f"x axis: the first patched layer k (0 = embedding output, {L} = last block); "
             f"{'every layer from k on' if ex_span is None else f'{ex_span} layer(s) from k'}. " + rule_text(min_prob)]
    for src, d in cur.groupby("source", sort=False):
        piv = d.pivot_table(index="layer", columns="lang", values="value")
        unp = base[base["source"] == src].set_index("lang")["value"]
        lead = piv.idxmax(axis=1)[piv.max(axis=1) >= min_prob]  # layer -> the leading set, material layers only
        by = {name: layer_ranges([int(k) for k, v in lead.items() if v == name]) or "none" for name in SETS}
        lines.append(
            f"- **{src}**: unpatched p(Ct in Y) = {unp['Ct in Y']:.3f}, p(Cs in Y) = {unp['Cs in Y']:.3f}. "
            f"Peaks: p(Cs in Y) {piv['Cs in Y'].max():.3f} (k = {int(piv['Cs in Y'].idxmax())}), "
            f"p(Cs in B) {piv['Cs in B'].max():.3f} (k = {int(piv['Cs in B'].idxmax())}). "
            f"Leading output by k: Cs in Y {by['Cs in Y']}; Cs in B {by['Cs in B']}; Ct in Y {by['Ct in Y']}; "
            f"Ct in B {by['Ct in B']}.")
    src_piv = cur[cur["source"] == "source"].pivot_table(index="layer", columns="lang", values="value")
    moved = src_piv.index[(src_piv["Cs in Y"] >= min_prob) & (src_piv["Cs in Y"] == src_piv.max(axis=1))]
    lead = src_piv.idxmax(axis=1)[src_piv.max(axis=1) >= min_prob]
    first = {name: min((int(k) for k, v in lead.items() if v == name), default=None) for name in SETS}
    if first["Ct in B"] is not None and (first["Cs in B"] is None or first["Ct in B"] < first["Cs in B"]):
        lines.append(f"Language before concept: from layer {first['Ct in B']} the patch carries the source's output "
                     f"language B={B} while the target concept stays (Ct in B leads)"
                     + (f"; the concept follows from layer {first['Cs in B']} (Cs in B leads)."
                        if first["Cs in B"] is not None else "; the source concept never leads."))
    if len(moved):
        lines.append(f"Concept without language: patching layer(s) {layer_ranges([int(k) for k in moved])} makes "
                     f"the source concept the most likely output in the target's language Y={Y}, the pattern "
                     "Dumas et al. report.")
    else:
        lines.append(f"The pattern Dumas et al. report (Cs in the target's language Y={Y} leading for middle "
                     f"layers) does not appear: p(Cs in Y) never leads with p ≥ {min_prob:g}.")
    ctx.report.section("Patching: concept vs language", "\n".join(lines), figures=[fig])
