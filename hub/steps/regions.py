"""Shared steps of the linguistic-region experiments: the text per language, split into a
scoring part and a held-out evaluation part, and the regions (scored here or loaded from a file).

Data. By default each language's text is ``<data.corpus>/<lang>.txt`` (the project's corpus).
``experiment.corpus`` maps languages to other text files (languages it does not name still
come from ``data.corpus``); ``experiment.hf_dataset`` reads a Hugging Face dataset saved with
``save_to_disk`` instead (``{path, text_column, lang_column, split}``; needs ``datasets``).

Split (deterministic). The first ``1 - eval_fraction`` of each text (by characters, moved to
the nearest line break) is the *scoring* part: importance, outlier dimensions and continued
pre-training read only it. The rest is the *evaluation* part: every perplexity is measured on
it, so no region is scored on the text it is judged by.
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from hub.context import RunContext
from hub.errors import UserError, UserFileError
from hub.models import HubModel
from hub.perplexity import Perplexity, perplexities
from hub.regions import MONO_PREFIX, RegionSet, accumulate_importance, build_regions


def split_text(text: str, eval_fraction: float = 0.4, name: str = "text") -> tuple[str, str]:
    """(scoring part, evaluation part): cut at the line break nearest ``1 - eval_fraction``."""
    if not isinstance(text, str) or not text.strip():
        raise UserError(f"{name}: empty text; expected running text to split into scoring and evaluation parts")
    if not 0.0 < float(eval_fraction) < 1.0:
        raise UserError(f"eval_fraction must be in (0, 1), got {eval_fraction!r}")
    text = text.strip()
    cut = round(len(text) * (1.0 - float(eval_fraction)))
    breaks = [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    if breaks:
        cut = min(breaks, key=lambda b: abs(b - cut))
    score, held = text[:cut].strip(), text[cut:].strip()
    if not score or not held:
        raise UserError(f"{name}: text too short to split (eval_fraction={eval_fraction}): "
                         f"{len(score)} scoring and {len(held)} evaluation characters")
    return score, held


def _read(path: str | Path, lang: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise UserFileError(f"language {lang!r}: corpus file {p} does not exist")
    text = p.read_text(encoding="utf-8")
    if not text.strip():
        raise UserError(f"language {lang!r}: corpus file {p} is empty")
    return text


def _from_hf(spec: Mapping, langs: Sequence[str]) -> dict[str, str]:
    try:
        from datasets import load_from_disk
    except ImportError as e:
        raise ImportError("experiment.hf_dataset needs the `datasets` package (pip install datasets)") from e
    ds = load_from_disk(str(spec["path"]))
    if hasattr(ds, "keys"):  # a DatasetDict
        ds = ds[spec.get("split", "train")]
    tcol, lcol = spec.get("text_column", "text"), spec.get("lang_column", "lang")
    for c in (tcol, lcol):
        if c not in ds.column_names:
            raise UserError(f"hf_dataset {spec['path']}: no column {c!r}; columns are {ds.column_names}")
    out = {lang: [] for lang in langs}
    for row in ds:
        if row[lcol] in out:
            out[row[lcol]].append(row[tcol])
    return {lang: "\n".join(t) for lang, t in out.items()}


def load_texts(cfg: DictConfig) -> dict[str, str]:
    """Full text per language of ``experiment.languages``; missing or empty text is an error."""
    e = cfg.experiment
    langs = [str(x) for x in e.languages]
    if not langs:
        raise UserError("experiment.languages is empty")
    if e.get("hf_dataset"):
        texts = _from_hf(OmegaConf.to_container(e.hf_dataset, resolve=True), langs)
    else:
        own = OmegaConf.to_container(e.corpus, resolve=True) if e.get("corpus") else {}
        texts = {lang: _read(own.get(lang) or Path(str(cfg.data.corpus)) / f"{lang}.txt", lang) for lang in langs}
    for lang, t in texts.items():
        if not t.strip():
            raise UserError(f"language {lang!r}: empty text")
    return texts


def load_splits(cfg: DictConfig) -> tuple[dict[str, str], dict[str, str]]:
    """(scoring texts, evaluation texts), lang -> text."""
    texts = load_texts(cfg)
    parts = {lang: split_text(t, cfg.experiment.eval_fraction, name=f"language {lang!r}") for lang, t in texts.items()}
    return {lang: p[0] for lang, p in parts.items()}, {lang: p[1] for lang, p in parts.items()}


def wants_mono(names: Sequence[str]) -> bool:
    """Whether a list of region names asks for any monolingual region."""
    return any(str(n) == "mono" or str(n).startswith(MONO_PREFIX) for n in names)


def get_regions(ctx: RunContext, hm: HubModel, scoring: Mapping[str, str], mono: bool = True) -> RegionSet:
    """Load ``experiment.regions_file`` (checked against the model) or score and save the regions.

    ``mono=False`` scores without keeping per-language importance (no monolingual regions).
    """
    e = ctx.cfg.experiment
    if e.get("regions_file"):
        rs = RegionSet.load(e.regions_file, hm)
        missing = set(scoring) - set(rs.meta["languages"])
        if mono and missing:
            raise UserError(f"regions_file {e.regions_file} has no monolingual regions for {sorted(missing)}; "
                             f"it was scored on {rs.meta['languages']}")
        ctx.report.meta["regions"] = f"loaded from {e.regions_file}"
        return rs
    imp_cfg = e.importance
    t0 = time.time()
    imp = accumulate_importance(hm, scoring, tokens=int(imp_cfg.tokens), window=int(e.window),
                                batch_size=int(e.batch_size), reduce=str(imp_cfg.reduce),
                                include=list(imp_cfg.include) if imp_cfg.get("include") else None,
                                exclude=list(imp_cfg.get("exclude") or []), keep_languages=mono,
                                progress=bool(ctx.cfg.progress))
    elapsed = time.time() - t0
    rs = build_regions(imp, k=e.k, seed=int(ctx.cfg.seed), mono=mono)
    n_tok = sum(imp.tokens.values())
    del imp  # per-language scores: 4 bytes per scored parameter and language
    release_memory()
    rs.meta["importance_seconds"] = round(elapsed, 1)
    path = rs.save(ctx.out / "regions.safetensors")
    ctx.report.meta["regions"] = (f"scored on {n_tok} tokens ({elapsed:.0f} s, "
                                  f"{1000 * elapsed / max(n_tok, 1):.2f} s per 1k tokens), saved to {path.name}")
    return rs


def release_memory() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them otherwise), so the evaluation
    phase does not hold the importance phase's peak; a no-op where malloc_trim is missing."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def eval_rows(hm: HubModel, held_out: Mapping[str, str], cfg: DictConfig, **ids) -> list[dict]:
    """Perplexity rows (one per language) on the evaluation texts."""
    e = cfg.experiment
    ppl: dict[str, Perplexity] = perplexities(hm, held_out, window=int(e.window), max_tokens=int(e.eval_tokens),
                                              batch_size=int(e.batch_size))
    return [{"metric": "perplexity", "layer": -1, "lang": lang, **ids, **p.row()} for lang, p in ppl.items()]
