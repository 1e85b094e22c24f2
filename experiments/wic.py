"""Where is lexical meaning? A layer-wise Word-in-Context probe (Liu et al. 2024).

Method. Each WiC item is one target word in two sentences, labelled same sense (T) or not
(F). For every input mode (``base``: the sentence; ``repeat``: the sentence twice, the word
read in the second copy; ``repeat_prev``: the same, read at the positions that predict the
word's tokens; ``prompt``: ``In this sentence "s", "w" means in one word: "``, last token)
and every layer, the word's vector is the mean over its sub-tokens. An anisotropy correction
(mean-centering or standardisation, per layer) is fitted on the training split only and
applied to every split, so no score depends on the batch it is scored with. The two
vectors' cosine is the probe's score: a threshold is chosen on the dev split (best dev
accuracy) and applied to the test split, giving test accuracy per layer with a Wilson 95%
interval (chance: the majority-class rate), and the threshold-free test AUC. The best layer
per mode is chosen on dev, never on test. Graded data in the style of RAW-C gives Spearman's
rho between the cosine and human (here: the project's) relatedness ratings per layer, with a
Fisher-z interval. Liu et al. find lexical meaning best in lower layers of causal LMs with
``base``/``repeat``, and later layers for ``prompt``.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from hub.context import RunContext
from hub.errors import UserError
from hub.plots import layer_curves
from hub.probe import PairProbe, best_threshold
from hub.readings import layer_ranges
from hub.stats import auc, bootstrap_indices, spearman_ci, wilson
from modalities.wic import DATA as WIC_DATA
from modalities.wic import load_wic, mode_sides, read_graded

log = logging.getLogger(__name__)


def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg, ctx.model
    w = cfg.wic
    layers = hm.check_layers(cfg.experiment.layers)
    frames, train_vecs, notes = [], {}, []
    sets, graded_cfgs, left_out = sources(w)
    if left_out:
        notes.append("Left out (shipped data; you gave your own): " + "; ".join(left_out) + ".")
    for name, root in sets.items():
        ws = load_wic(root, name, check_target=w.check_target, max_items=w.max_items, seed=cfg.seed)
        thr_split, eval_split = protocol(ws)
        notes.append(f"**{name}** ({root}): " + ", ".join(f"{s} {len(v)}" for s, v in ws.splits.items())
                     + f" pairs; threshold on {thr_split}, accuracy on {eval_split}; dropped "
                     f"{dict(ws.drops) or 'none'}; notes {dict(ws.notes) or 'none'}.")
        for mode in w.modes:
            probe = PairProbe(hm, layers, w.normalize, cfg.batch_size)
            vecs = {split: probe.vectors(mode_sides(hm.tokenizer, items, mode, w.template))
                    for split, items in ws.splits.items()}
            probe.fit(vecs["train"])
            train_vecs[(name, mode)] = vecs["train"]
            cos = {split: probe.cosines(v) for split, v in vecs.items()}
            labels = {split: np.array([it.label for it in items], dtype=bool) for split, items in ws.splits.items()}
            df = evaluate(cos[thr_split], labels[thr_split], cos[eval_split], labels[eval_split], layers, cfg.seed)
            frames.append(df.assign(mode=mode, lang=name, task="wic", split=eval_split))
    graded_notes = []
    for g in graded_cfgs:
        rows, note = graded(ctx, g, layers, train_vecs)
        frames.append(rows)
        graded_notes.append(note)
    df = ctx.add(pd.concat(frames, ignore_index=True), modality="text")
    report(ctx, df, notes, layers, graded_notes)
    return df


def sources(w) -> tuple[dict, list, list[str]]:
    """The WiC sets and graded files of this run, and what was left out.

    ``wic.sets`` null means the shipped sets (``wic.shipped_sets``). When any set or graded file
    is the user's own, the shipped ones are left out (named in the report), so a run on your own
    data never mixes in the project's.
    """
    sets = dict(w.sets) if w.get("sets") is not None else dict(w.shipped_sets)
    if not sets:
        raise UserError("wic.sets is empty, in the wic config; expected name: directory pairs, e.g. "
                        "'wic.sets={wic: /data/WiC_dataset}'")
    graded = list(w.get("graded") or [])

    def shipped(p) -> bool:
        return Path(str(p)).resolve().is_relative_to(WIC_DATA.resolve())

    own_sets = any(not shipped(p) for p in sets.values())
    own_any = own_sets or any(not shipped(g.path) for g in graded)
    left = [f"set {n} ({p})" for n, p in sets.items() if own_sets and shipped(p)]
    left += [f"graded {g.get('name', 'graded')} ({g.path})" for g in graded if own_any and shipped(g.path)]
    sets = {n: p for n, p in sets.items() if not (own_sets and shipped(p))}
    return sets, [g for g in graded if not (own_any and shipped(g.path))], left


def protocol(ws) -> tuple[str, str]:
    """(threshold split, evaluation split): dev/test when test has gold labels, else train/dev."""
    missing = [s for s in ("train", "dev", "test") if s not in ws.splits]
    if "train" in missing or "dev" in missing:
        raise UserError(f"WiC set {ws.name!r} needs train and dev splits; missing {missing}")
    has_gold = {s: all(it.label is not None for it in items) and len(items) > 0 for s, items in ws.splits.items()}
    if has_gold.get("test"):
        return "dev", "test"
    if has_gold["dev"] and has_gold["train"]:
        log.warning("WiC set %s: the test split has no gold labels; threshold on train, accuracy on dev", ws.name)
        return "train", "dev"
    raise UserError(f"WiC set {ws.name!r}: gold labels are needed for train and dev (found gold for "
                     f"{[s for s, g in has_gold.items() if g]})")


def evaluate(cos_thr: np.ndarray, y_thr: np.ndarray, cos_eval: np.ndarray, y_eval: np.ndarray, layers: list[int],
             seed: int, n_boot: int = 200) -> pd.DataFrame:
    """Per layer: threshold from one split, accuracy (Wilson CI) and AUC (bootstrap CI) on the other."""
    boot = bootstrap_indices(len(y_eval), n_boot, seed)
    majority = max(y_eval.mean(), 1 - y_eval.mean())
    rows = []
    for j, k in enumerate(layers):
        thr = best_threshold(cos_thr[:, j], y_thr)
        dev_acc = float(((cos_thr[:, j] > thr) == y_thr).mean())
        correct = (cos_eval[:, j] > thr) == y_eval
        lo, hi = wilson(int(correct.sum()), len(correct))
        rows.append(dict(metric="accuracy", layer=k, value=float(correct.mean()), baseline=majority, ci_low=lo,
                         ci_high=hi, n=len(correct)))
        rows.append(dict(metric="threshold_split_accuracy", layer=k, value=dev_acc, baseline=max(y_thr.mean(),
                         1 - y_thr.mean()), n=len(y_thr)))
        rows.append(dict(metric="threshold", layer=k, value=thr, n=len(y_thr)))
        a = auc(cos_eval[:, j], y_eval)
        bs = [auc(cos_eval[b, j], y_eval[b]) for b in boot]
        bs = [x for x in bs if np.isfinite(x)]
        rows.append(dict(metric="auc", layer=k, value=a, baseline=0.5, ci_low=float(np.percentile(bs, 2.5)),
                         ci_high=float(np.percentile(bs, 97.5)), n=len(y_eval)))
    return pd.DataFrame(rows)


def graded(ctx: RunContext, g, layers: list[int], train_vecs: dict) -> tuple[pd.DataFrame, str]:
    """Spearman's rho between the probe's cosine and graded relatedness, per mode and layer."""
    cfg, hm = ctx.cfg, ctx.model
    drops, notes = Counter(), Counter()
    items = read_graded(g.path, g.get("column", "mean_relatedness"), drops, notes, cfg.wic.check_target)
    if len(items) < 4:
        raise UserError(f"{g.path}: only {len(items)} usable graded pairs after dropping {dict(drops)}")
    scores = np.array([it.score for it in items])
    frames = []
    for mode in cfg.wic.modes:
        probe = PairProbe(hm, layers, cfg.wic.normalize, cfg.batch_size)
        fit_on = g.get("fit_on")
        if cfg.wic.normalize != "none":
            if (fit_on, mode) not in train_vecs:
                raise UserError(f"graded file {g.path}: fit_on={fit_on!r} must name a WiC set in wic.sets "
                                 f"(its training split fits the anisotropy correction)")
            probe.fit(train_vecs[(fit_on, mode)])
        cos = probe.cosines(probe.vectors(mode_sides(hm.tokenizer, items, mode, cfg.wic.template)))
        rows = []
        for j, k in enumerate(layers):
            if np.ptp(cos[:, j]) < 1e-6:  # the same token read for every item (prompt mode, layer 0)
                continue
            rho, lo, hi = spearman_ci(cos[:, j], scores)
            rows.append(dict(metric="spearman", layer=k, value=rho, baseline=0.0, ci_low=lo, ci_high=hi,
                             n=len(items)))
        frames.append(pd.DataFrame(rows).assign(mode=mode, lang=g.get("name", "graded"), task="graded",
                                                split=str(g.path)))
    if drops:
        log.warning("graded file %s: dropped %s", g.path, dict(drops))
    return pd.concat(frames, ignore_index=True), (f"{g.get('name', 'graded')} ({g.path}): {len(items)} pairs; "
                                                   f"dropped {dict(drops) or 'none'}; notes {dict(notes) or 'none'}.")


def report(ctx: RunContext, df: pd.DataFrame, notes: list[str], layers: list[int], graded_notes: list[str]
           ) -> None:
    acc = df[(df["task"] == "wic") & (df["metric"] == "accuracy")]
    chance = [float(c) for c in sorted(acc["baseline"].round(3).unique())]
    figs = [layer_curves(acc, ctx.out / "wic_accuracy.png", group="mode", panels="lang", title="WiC test accuracy",
                         ylabel="accuracy", hline=0.5, ylim=(0.3, 1.0))]
    aucs = df[(df["task"] == "wic") & (df["metric"] == "auc")]
    figs.append(layer_curves(aucs, ctx.out / "wic_auc.png", group="mode", panels="lang", title="WiC test AUC",
                             ylabel="AUC", hline=0.5, ylim=(0.3, 1.0)))
    lines = ["| set | mode | best layer on dev | dev acc | test acc at that layer [95% CI] | peak test acc (layer) | "
             "test AUC at dev layer | layers with test acc CI above chance |", "|---|---|---|---|---|---|---|---|"]
    for (name, mode), g in df[df["task"] == "wic"].groupby(["lang", "mode"], sort=False):
        a = g[g["metric"] == "accuracy"].set_index("layer")
        d = g[g["metric"] == "threshold_split_accuracy"].set_index("layer")
        u = g[g["metric"] == "auc"].set_index("layer")
        best = int(d["value"].idxmax())
        above = [int(k) for k in a.index if a.loc[k, "ci_low"] > a.loc[k, "baseline"]]
        lines.append(f"| {name} | {mode} | {best} | {d.loc[best, 'value']:.3f} | {a.loc[best, 'value']:.3f} "
                     f"[{a.loc[best, 'ci_low']:.3f}, {a.loc[best, 'ci_high']:.3f}] | {a['value'].max():.3f} "
                     f"({int(a['value'].idxmax())}) | {u.loc[best, 'value']:.3f} | {layer_ranges(above)} |")
    text = ("\n\n".join(notes) + f"\n\nAnisotropy correction: {ctx.cfg.wic.normalize}, fitted on each set's training "
            f"split. Chance (majority class on the test split): {chance}; the dotted line marks 0.5. Layer 0 = "
            "embeddings.\n\n" + "\n".join(lines))
    ctx.report.section("Lexical semantics: WiC probe per layer", text, figures=figs)
    gr = df[df["task"] == "graded"]
    if len(gr):
        fig = layer_curves(gr, ctx.out / "wic_graded_spearman.png", group="mode", panels="lang",
                           title="graded relatedness", ylabel="Spearman rho", hline=0.0)
        rows = ["| data | mode | peak rho (layer) | rho at first layer (layer) | rho at last layer | layers with rho "
                "CI above 0 |", "|---|---|---|---|---|---|"]
        for (name, mode), g in gr.groupby(["lang", "mode"], sort=False):
            g = g.set_index("layer").sort_index()
            s, first = g["value"], int(g.index[0])
            above = [int(k) for k in g.index if g.loc[k, "ci_low"] > 0]
            rows.append(f"| {name} | {mode} | {s.max():.3f} ({int(s.idxmax())}) | {s.loc[first]:.3f} ({first}) | "
                        f"{s.loc[layers[-1]]:.3f} | {layer_ranges(above)} |")
        ctx.report.section("Lexical semantics: graded relatedness (Spearman per layer)",
                           " ".join(graded_notes) + " 95% Fisher-z intervals shaded. Layers where every "
                           "pair is read at the same token (prompt mode at layer 0) have no rho and are left out."
                           "\n\n"
                           + "\n".join(rows), figures=[fig])
