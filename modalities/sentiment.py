"""Sentiment lexicons and evaluative prompts per language (the steer_sentiment data adapter).

Data. A lexicon per language (``<lang>.txt``): ``+<TAB>word`` / ``-<TAB>word`` lines, ``#``
comments; prompts (``prompts.tsv``): ``lang<TAB>prompt`` lines that invite an evaluative word.
Per seed, each polarity is split at random into words that build a steering vector and
held-out words that measure it (:func:`split_lexicon`); :class:`LexiconScorer` counts held-out
matches in generated text; :func:`first_token_sets` gives the words' first tokens as
continuations. Bad input (a missing file, a malformed line, an empty polarity, a language
without prompts) is an error naming file and line.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hub.errors import UserError, UserFileError
from hub.models import HubModel

NO_SPACE_LANGS = {"zh", "ja"}


@dataclass(frozen=True)
class Lexicon:
    """Positive and negative entries of one language, in file order."""

    lang: str
    positive: tuple[str, ...]
    negative: tuple[str, ...]


def read_lexicon(path: str | Path, lang: str) -> Lexicon:
    """Read ``<+|->\\t<entry>`` lines (``#`` comments); both polarities must be non-empty."""
    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"sentiment lexicon for {lang!r} not found at {path}: expected a file of "
                                "'+<TAB>word' / '-<TAB>word' lines")
    pos, neg = [], []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        sign, _, word = line.partition("\t")
        if sign not in ("+", "-") or not word.strip():
            raise UserError(f"{path}:{i}: expected '+<TAB>word' or '-<TAB>word', got {line!r}")
        (pos if sign == "+" else neg).append(word.strip())
    if not pos or not neg:
        raise UserError(f"{path}: needs positive and negative entries, got {len(pos)} and {len(neg)}")
    return Lexicon(lang, tuple(pos), tuple(neg))


def read_prompts(path: str | Path, langs: list[str]) -> dict[str, list[str]]:
    """``lang<TAB>prompt`` lines; every requested language needs at least one prompt."""
    out: dict[str, list[str]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            lang, _, prompt = line.partition("\t")
            out.setdefault(lang, []).append(prompt)
    missing = [L for L in langs if not out.get(L)]
    if missing:
        raise UserError(f"{path}: no prompts for languages {missing}: expected 'lang<TAB>prompt' lines")
    return {L: out[L] for L in langs}


@dataclass(frozen=True)
class Split:
    """One seed's division of a lexicon into vector-building and measuring words."""

    build_pos: list[str]
    build_neg: list[str]
    held_pos: list[str]
    held_neg: list[str]


def split_lexicon(lex: Lexicon, n_build: int, seed: int) -> Split:
    """Random ``n_build`` words per polarity build the vector; the rest are held out."""
    if not 0 < n_build < min(len(lex.positive), len(lex.negative)):
        raise UserError(f"n_build={n_build}: expected 1..{min(len(lex.positive), len(lex.negative)) - 1} "
                         f"for the {lex.lang} lexicon (some words must be held out)")
    rng = np.random.default_rng([seed, zlib.crc32(lex.lang.encode())])
    p, n = rng.permutation(len(lex.positive)), rng.permutation(len(lex.negative))
    pos, neg = [lex.positive[i] for i in p], [lex.negative[i] for i in n]
    return Split(pos[:n_build], neg[:n_build], pos[n_build:], neg[n_build:])


def first_token_sets(hm: HubModel, lang: str, pos: list[str], neg: list[str]
                     ) -> tuple[list[int], list[int]] | None:
    """First tokens of the words as continuations (with a leading space where the language has one).

    Tokens that start both a positive and a negative word are dropped from both sets; None when
    nothing separates the polarities (e.g. a byte-level tokenizer on Chinese).
    """
    lead = "" if lang in NO_SPACE_LANGS else " "

    def first(words):
        return {hm.tokenizer(lead + w, add_special_tokens=False)["input_ids"][0] for w in words}
    p, n = first(pos), first(neg)
    both = p & n
    p, n = sorted(p - both), sorted(n - both)
    return (p, n) if p and n else None


class LexiconScorer:
    """Counts lexicon matches in text: longest entries first, each stretch of text used once.

    All entries of the language are matched (so 不好 is read as negative, never as 好), and
    only matches of the ``counted`` held-out entries are scored.
    """

    def __init__(self, lex: Lexicon, counted_pos: list[str], counted_neg: list[str]):
        entries = sorted({*lex.positive, *lex.negative}, key=len, reverse=True)
        alt = "|".join(re.escape(e) for e in entries)
        pat = f"(?:{alt})" if lex.lang in NO_SPACE_LANGS else rf"(?<!\w)(?:{alt})(?!\w)"
        self.regex = re.compile(pat, re.IGNORECASE)
        self.sign = {w.lower(): 1 for w in counted_pos} | {w.lower(): -1 for w in counted_neg}

    def __call__(self, text: str) -> int:
        """#positive − #negative counted matches."""
        return sum(self.sign.get(m.group(0).lower(), 0) for m in self.regex.finditer(text))
