"""What do image tokens say? The logit lens at image positions of a vision-language model.

Method. Each image goes through the model in the family's image prompt. At every layer we
read the residual stream at the image-token positions (all of them, or an evenly spaced
subset of ``max_positions``), apply final norm + unembedding, and per position sum the
probability over the token sets (all token prefixes, with and without the word-boundary
marker, lower and capitalised) of

* the nouns of the image's own caption (e.g. "circle", "circles", "red"), and
* the nouns of an unrelated caption (another item sharing no noun with this one),

averaged over image positions, then over images (95% intervals over images). The caption
languages in ``lens_langs`` each get their own sets. On solid-colour images we also count
how often the colour word is the top-1 token, as the fraction of image positions
(``colour_top1``) and of images with at least one such position (``colour_top1_any``);
the chance level is the token set's share of the vocabulary. A hub that reads out in
English predicts caption nouns above unrelated nouns at image positions in middle layers,
more so in English than in other languages. Lenses: the ``lens=`` group (logit by default,
patchscope, several in one job); every lens reads the same image-token states, with its own
rows (``lens`` column), lines and reading.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate

from hub.context import RunContext
from hub.errors import UserError
from hub.lens import Lens
from hub.lens.tokensets import token_set
from hub.plots import layer_curves
from hub.readings import compare_curves, leads_text, min_prob_of, rule_text
from hub.models.vlm import MultimodalHubModel
from hub.stats import mean_ci
from hub.steps.lenses import configured_lenses, lens_label, lens_norms, lens_series, per_lens, per_lens_text
from modalities.synthetic_images import ImageItem


def noun_set(tokenizer, words: list[str]) -> frozenset[int]:
    """Union of the token sets of ``words`` in their written, lower and Capitalised forms."""
    out: set[int] = set()
    for w in words:
        for f in {w, w.lower(), w[:1].upper() + w[1:]}:
            out |= token_set(tokenizer, f)
    return frozenset(out)


def unrelated_index(items: list[ImageItem], i: int, lang: str) -> int | None:
    """The first item after ``i`` (cyclically, starting half-way) whose nouns share nothing with i's."""
    n, mine = len(items), {w.lower() for w in items[i].nouns.get(lang, [])}
    for step in range(n // 2, n // 2 + n):
        j = (i + step) % n
        if j != i and items[j].nouns.get(lang) and not mine & {w.lower() for w in items[j].nouns[lang]}:
            return j
    return None


def image_positions(hm: MultimodalHubModel, items: list[ImageItem], prompt, max_positions: int
                    ) -> tuple[list, list[list[int]]]:
    """Encoded items and, per item, the same number of evenly spaced image-token positions."""
    enc = [hm.encode_image(it.image, prompt) for it in items]
    k = min(min(len(e.positions) for e in enc), max_positions)
    pos = [[e.positions[int(round(x))] for x in np.linspace(0, len(e.positions) - 1, k)] for e in enc]
    return enc, pos


def run(ctx: RunContext) -> pd.DataFrame:
    cfg = ctx.cfg
    hm = ctx.model
    adapter = instantiate(cfg.modality)
    items = adapter.items()
    layers = hm.check_layers(cfg.experiment.layers)
    lenses = configured_lenses(cfg, hm, experiment="image_lens")
    enc, pos = image_positions(hm, items, adapter.prompt, int(cfg.experiment.max_positions))
    states = hm.capture([e.ids for e in enc], layers=layers, positions=pos, extra=[e.extra for e in enc],
                        batch_size=cfg.batch_size)  # [n, layer, k, d]
    n, L, k, d = states.shape
    flat = states.permute(0, 2, 1, 3).reshape(n * k, L, d)  # [n*k, layer, d]
    sets, drops = noun_sets(hm.tokenizer, items, list(cfg.experiment.lens_langs))

    def read(_: str, lens: Lens) -> pd.DataFrame:
        frames = noun_rows(lens, sets, flat, k, layers) + colour_rows(hm, lens, items, flat, k, layers)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    df = per_lens(lenses, read)
    if not len(df):
        raise UserError(f"no items with usable noun token sets (drops: {drops})")
    df = ctx.add(df, modality="image", task="image_lens", src="image")
    report(ctx, df, drops, k, lenses)
    return df


def noun_sets(tok, items: list[ImageItem], langs: list[str]) -> tuple[dict[str, tuple[list[int], list]], dict]:
    """Per caption language: the kept items and their ``[own nouns, unrelated nouns]`` token sets
    (shared tokens removed; a language with fewer than 2 items is left out), and the drops."""
    out, drops = {}, {}
    for lang in langs:
        keep, sets = [], []
        for i, it in enumerate(items):
            j = unrelated_index(items, i, lang)
            if j is None or not it.nouns.get(lang):
                key = f"{lang}: no nouns or no unrelated caption"
                drops[key] = drops.get(key, 0) + 1
                continue
            own, other = noun_set(tok, it.nouns[lang]), noun_set(tok, items[j].nouns[lang])
            own, other = own - other, other - own
            if not own or not other:
                key = f"{lang}: token sets empty after removing shared tokens"
                drops[key] = drops.get(key, 0) + 1
                continue
            keep.append(i)
            sets.append([list(own), list(other)])
        if len(keep) >= 2:
            out[lang] = (keep, sets)
    return out, drops


def noun_rows(lens: Lens, noun_sets: dict, flat: torch.Tensor, k: int, layers: list[int]) -> list[pd.DataFrame]:
    """Per language: p(caption nouns) and p(unrelated nouns) per layer, averaged over an image's
    ``k`` positions, then over images. ``flat [images*k, layer, d]``."""
    frames, L = [], flat.shape[1]
    for lang, (keep, sets) in noun_sets.items():
        rows = torch.cat([flat[i * k:(i + 1) * k] for i in keep])
        red = lens.reduce(rows, token_sets=[s for s in sets for _ in range(k)], layers=layers)
        p = red["set_prob"].reshape(len(keep), k, L, 2).mean(1).numpy()  # [items, layer, 2]
        for s, name in enumerate(("caption", "unrelated")):
            m, lo, hi = mean_ci(p[:, :, s], bounds=(0.0, 1.0))
            frames.append(pd.DataFrame({"metric": "noun_prob", "set": name, "lang": lang, "layer": layers, "value": m,
                                        "ci_low": lo, "ci_high": hi, "n": len(keep)}))
    return frames


def colour_rows(hm, lens: Lens, items: list[ImageItem], flat: torch.Tensor, k: int, layers: list[int]
                ) -> list[pd.DataFrame]:
    """How often the colour word (English) is the top-1 lens token at image positions."""
    idx = [i for i, it in enumerate(items) if it.kind == "colour" and it.colour]
    if not idx:
        return []
    L = flat.shape[1]
    top = lens.reduce(torch.cat([flat[i * k:(i + 1) * k] for i in idx]), top_k=1, layers=layers)["top_ids"][..., 0]
    top = top.reshape(len(idx), k, L)
    hits = np.zeros((len(idx), k, L), dtype=bool)
    chance = []
    for r, i in enumerate(idx):
        ids = noun_set(hm.tokenizer, [items[i].colour])
        hits[r] = np.isin(top[r].numpy(), list(ids))
        chance.append(len(ids) / hm.vocab_size)
    out = []
    for metric, vals in (("colour_top1", hits.mean(1)), ("colour_top1_any", hits.any(1).astype(float))):
        m, lo, hi = mean_ci(vals, bounds=(0.0, 1.0))
        out.append(pd.DataFrame({"metric": metric, "set": "colour", "lang": "en", "layer": layers, "value": m,
                                 "ci_low": lo, "ci_high": hi, "n": len(idx), "baseline": float(np.mean(chance))}))
    return out


def report(ctx: RunContext, df: pd.DataFrame, drops: dict, k: int, lenses: dict[str, Lens]) -> None:
    figs = []
    nouns = df[df["metric"] == "noun_prob"]
    if len(nouns):
        d, order = lens_series(nouns, "set", order=["caption", "unrelated"])
        figs.append(layer_curves(d, ctx.out / "image_lens_nouns.png", group="series", panels="lang", baseline_col=None,
                                 group_order=order, ylabel="probability",
                                 title=f"caption nouns vs unrelated nouns at image positions, {lens_label(lenses)}"))
    colour = df[df["metric"].str.startswith("colour_top1")]
    if len(colour):
        d, order = lens_series(colour, "metric")
        figs.append(layer_curves(d, ctx.out / "image_lens_colour.png", group="series", group_order=order, ylim=(0, 1),
                                 title=f"solid colours: colour word is top-1 ({lens_label(lenses)})", ylabel="fraction"))
    min_prob = min_prob_of(ctx.cfg)
    readings = per_lens_text(df, lambda d, _: "\n".join(lens_lines(d, min_prob)), block=True)
    text = (f"{ctx.cfg.model.name}, {k} image-token positions per image. {lens_norms(lenses)}.\n\n" + readings
            + ("\n\n" + rule_text(min_prob) if len(nouns) else "") + f"\n\nDropped: {drops or 'none'}.")
    ctx.report.section(f"{lens_label(lenses)[:1].upper()}{lens_label(lenses)[1:]} at image positions", text,
                       figures=figs)


def lens_lines(df: pd.DataFrame, min_prob: float) -> list[str]:
    """The reading of one lens's rows: per language where caption nouns beat unrelated nouns,
    per colour metric its best layer against chance."""
    lines = []
    nouns, colour = df[df["metric"] == "noun_prob"], df[df["metric"].str.startswith("colour_top1")]
    for lang, d in nouns.groupby("lang", sort=False):
        c = d[d["set"] == "caption"].set_index("layer")
        u = d[d["set"] == "unrelated"].set_index("layer")
        leads = compare_curves(c, u, min_prob)
        best = int((c["value"] - u["value"]).idxmax())
        lines.append(f"- **{lang}** (n = {int(c['n'].iloc[0])}): caption − unrelated peaks at layer {best} "
                     f"({c.loc[best, 'value']:.4f} vs {u.loc[best, 'value']:.4f}). "
                     + leads_text(leads, "caption nouns", "unrelated nouns"))
    for metric, d in colour.groupby("metric", sort=False):
        best = d.loc[d["value"].idxmax()]
        lines.append(f"- **{metric}**: best layer {int(best['layer'])} = {best['value']:.3f} "
                     f"(chance {best['baseline']:.2g}).")
    return lines
