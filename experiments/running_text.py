"""Running-text logit lens (semantic-hub paper, multilingual lens on natural text).

Method. On non-English running text, at every word boundary we read the residual state of the
token just before the word and, per layer, compare the lens probability of the actual next
word (its token set) with that of its English translation. Translations come from the
word-level glosses shipped with the text, or from a bilingual dictionary (CC-CEDICT for
Chinese, FreeDict or a TSV for others). Words whose first token also covers the previous word,
words without a single-word English translation, and pairs whose token sets are empty or
overlap (or whose English word is a substring of the foreign word) are dropped and counted.
A hub that reads out in English predicts p(English) above p(actual word) in middle layers.
Lenses: the ``lens=`` group (logit by default, patchscope, several in one job); every lens
reads the same states, with its own rows (``lens`` column), lines and table rows.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import torch

from hub.context import RunContext
from hub.errors import UserError, UserFileError
from hub.lens.tokensets import lens_drop_reason, token_set
from hub.plots import layer_curves
from hub.readings import compare_curves, curve, layer_ranges, min_prob_of, rule_text
from hub.stats import mean_ci
from hub.steps.lenses import configured_lenses, lens_label, lens_norms, lens_series, per_lens
from modalities.dictionary import glossed_words, load_cedict, load_freedict, load_tsv

UNSPACED = {"zh", "ja", "th"}


def load_paragraphs(text_dir: Path, lang: str, dict_cfg: dict | None) -> list[tuple[str, list]]:
    """(text, [(surface word, English or None), ...]) per paragraph, from JSONL or text+dictionary."""
    jsonl, txt = text_dir / f"{lang}.jsonl", text_dir / f"{lang}.txt"
    if jsonl.exists():
        out = []
        for i, line in enumerate(jsonl.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                obj = json.loads(line)
                if "text" not in obj or "words" not in obj:
                    raise UserError(f"{jsonl}: line {i}: expected fields 'text' and 'words'")
                out.append((obj["text"], [tuple(w) for w in obj["words"]]))
        return out
    if txt.exists():
        d = _dictionary(lang, dict_cfg)
        paras = [p.strip() for p in txt.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        return [(p, glossed_words(p, d, spaced=lang not in UNSPACED)) for p in paras]
    raise UserFileError(f"no running text for {lang!r}: expected {jsonl} or {txt}")


def _dictionary(lang: str, cfg: dict | None):
    if not cfg:
        if lang == "zh":
            return load_cedict()
        raise UserError(f"running text {lang}.txt has no glosses: configure experiment.dictionaries.{lang} "
                         "(kind: cedict | freedict | tsv and its paths)")
    kind = cfg["kind"]
    if kind == "cedict":
        return load_cedict(cfg.get("path"))
    if kind == "freedict":
        return load_freedict(cfg["index"], cfg["data"], lang, cfg.get("english_headwords", True))
    if kind == "tsv":
        return load_tsv(cfg["path"], lang)
    raise UserError(f"dictionary kind {kind!r} for {lang}: expected cedict, freedict or tsv")


def word_positions(tokenizer, text: str, words: list, drops: Counter) -> list[tuple[int, str, str]]:
    """(index of the token before the word, word, English) for each usable glossed word."""
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=True)
    offsets = enc["offset_mapping"]
    out, cursor = [], 0
    for surface, english in words:
        c = text.find(surface, cursor)
        if c < 0:
            drops["word not found in text"] += 1
            continue
        cursor = c + len(surface)
        if not english:
            drops["no single-word English translation"] += 1
            continue
        t = next((j for j, (s, e) in enumerate(offsets) if e > c and e > s), None)
        if t is None or t < 1:
            drops["no token before the word"] += 1
            continue
        start = offsets[t][0]
        if start < c and text[start:c].strip():
            drops["word starts inside a token"] += 1
            continue
        out.append((t - 1, surface, english))
    return out


def running_text_row(d: pd.DataFrame, lang: str, drops: dict, min_prob: float, lens: str | None = None) -> str:
    """One table row (one language; with ``lens``, its name in a cell after the language): how many
    material middle layers have p(en) > p(actual word) (means, no interval test), with the leads
    that the materiality rule does not count listed apart."""
    a, e = curve(d, lang), curve(d, "en")
    mid = [k for k in a.index if 0 < k < max(a.index)]
    leads = compare_curves(e.loc[mid], a.loc[mid], min_prob, separated=False)
    lens_cell = f"{lens} | " if lens is not None else ""
    return (f"| {lang} | {lens_cell}{int(d['n'].iloc[0])} | {len(leads.a)}/{len(leads.material)} (of {len(mid)}) | "
            f"{layer_ranges(leads.a_immaterial)} | {e.loc[mid, 'value'].max():.3f} (layer "
            f"{int(e.loc[mid, 'value'].idxmax())}) | {a['value'].iloc[-1]:.3f} | {e['value'].iloc[-1]:.3f} | {drops} |")


def run(ctx: RunContext) -> pd.DataFrame:
    cfg, hm = ctx.cfg, ctx.model
    ex = cfg.experiment
    text_dir = Path(ex.text_dir)
    lenses = configured_lenses(cfg, hm, experiment="running_text")
    layers = hm.check_layers(ex.layers)
    frames, drops_by_lang = [], {}
    for lang in ex.languages:
        drops: Counter = Counter()
        paras = load_paragraphs(text_dir, lang, (ex.get("dictionaries") or {}).get(lang))
        items = []  # (paragraph index, position, surface, english, target set, english set)
        for p, (text, words) in enumerate(paras):
            for pos, surface, english in word_positions(hm.tokenizer, text, words, drops):
                ts, es = token_set(hm.tokenizer, surface), token_set(hm.tokenizer, english)
                reason = lens_drop_reason(surface, english, ts, es)
                if reason:
                    drops[reason] += 1
                    continue
                items.append((p, pos, surface, english, ts, es))
        if ex.get("max_words") is not None:  # the first max_words usable words (a small, quick run)
            items = items[:int(ex.max_words)]
        drops_by_lang[lang] = dict(drops)
        if len(items) < 4:
            raise UserError(f"running text {lang}: only {len(items)} usable words after drops {dict(drops)}")
        states = hm.capture([t for t, _ in paras], layers=layers, positions="all", batch_size=cfg.batch_size)
        picked = torch.stack([states[p][:, pos] for p, pos, *_ in items])  # [n_words, layer, d]
        sets = [[list(ts), list(es)] for *_, ts, es in items]
        rows = per_lens(lenses, lambda _, lens: _rows(lens.reduce(picked, token_sets=sets, layers=layers)["set_prob"],
                                                      [lang, "en"], layers))
        frames.append(ctx.add(pd.DataFrame(rows), task="running_text", src=lang, tgt=lang, modality="text"))
    df = pd.concat(frames, ignore_index=True)
    plot, order = lens_series(df.assign(kind=lambda d: d["lang"].where(d["lang"] == "en", "actual word")), "kind",
                              order=["actual word", "en"])
    fig = layer_curves(plot, ctx.out / "running_text_lens.png", group="series", panels="src", baseline_col=None,
                       group_order=order, ylabel="probability",
                       title=f"running text: p(actual next word) vs p(English translation), {lens_label(lenses)}")
    min_prob = min_prob_of(cfg)
    lines = [running_text_row(d, lang, drops_by_lang[lang], min_prob, lens)
             for (lang, lens), d in df.groupby(["src", "lens"], sort=False)]
    ctx.report.section(
        "Running-text lens: actual next word vs its English translation",
        f"{lens_norms(lenses)}. One row per language and lens"
        + (f"; the first {ex.max_words} usable words per language (experiment.max_words)" if ex.get("max_words") else "")
        + ".\n\n"
        "| lang | lens | words | material middle layers with p(en) > p(actual) | p(en) > p(actual), not counted "
        f"(p(en) < {min_prob:g}) | max p(en) in the middle | p(actual) last | p(en) last | dropped |\n"
        "|---|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n\nMiddle layers: 0 < layer < last. A middle "
        "layer is material where max(p(en), p(actual)) ≥ the threshold; the count is 'p(en) leads / material "
        "middle layers'. " + rule_text(min_prob),
        figures=[fig],
    )
    return df


def _rows(set_prob: torch.Tensor, names: list[str], layers: list[int]) -> pd.DataFrame:
    """Per-layer mean ``lang_prob`` with 95% intervals of ``set_prob [words, layer, sets]``, one curve per name."""
    sp, rows = set_prob.numpy(), []
    for s, name in enumerate(names):
        m, lo, hi = mean_ci(sp[:, :, s], bounds=(0.0, 1.0))
        rows += [{"metric": "lang_prob", "lang": name, "layer": k, "value": m[j], "ci_low": lo[j],
                  "ci_high": hi[j], "n": sp.shape[0]} for j, k in enumerate(layers)]
    return pd.DataFrame(rows)
