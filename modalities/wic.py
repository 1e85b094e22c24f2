"""Word-in-Context data and its model inputs per probe mode (Liu et al. 2024).

Data. The standard WiC format (Pilehvar & Camacho-Collados 2019): ``*.data.txt`` with
tab-separated ``target, POS, i-j, sentence 1, sentence 2`` (i, j = word indices of the
target in each whitespace-split sentence) and ``*.gold.txt`` with ``T``/``F`` per line. A
directory holds one ``{split}.data.txt`` (+ gold) per split, at any depth (the official
release nests ``train/train.data.txt``). Graded data in the style of RAW-C (Trott & Bergen
2021) is a CSV/TSV with ``word`` (or ``target``), ``sentence1``, ``sentence2``, a graded
column (default ``mean_relatedness``) and optional ``index1``/``index2``; without indices
the word is looked up in the sentence. The project's sets (modalities/data/wic/) are built
from sense inventories written for it by :func:`build_from_inventory`.

Bad input. A malformed line or a gold file of the wrong length is an error naming file and
line. An index outside its sentence, or a target word that cannot be found in a sentence
(graded data without indices), is a counted drop. An indexed word that is not a form of the
target (``gear`` for ``carry``: a misaligned index) is counted as a note and kept, or dropped
with ``check_target="drop"``; ordinary English inflections (carried, ran, studies, children)
are forms of their lemma (modalities/inflections.py).

Inputs. For each input mode the target word is read as the mean over its sub-tokens:
``base`` (the sentence), ``repeat`` (the sentence twice, the word read in the second copy),
``repeat_prev`` (the same input, read one token earlier: the positions that *predict* the
word's tokens), ``prompt`` (``In this sentence "s", "w" means in one word: "``, the last
token). :func:`mode_sides` gives the two sentences of each item as paired sides; the probe
(hub.probe) compares them per layer by cosine after an anisotropy correction fitted on the
training split. The shipped sets are built by modalities.wic_build.
"""
from __future__ import annotations

import csv
import logging
import random
import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from hub.contract import Side
from hub.errors import UserError, UserFileError
from modalities.inflections import is_inflection
from modalities.text import iso_codes

log = logging.getLogger(__name__)
DATA = Path(__file__).parent / "data" / "wic"
MODES: tuple[str, ...] = ("base", "repeat", "repeat_prev", "prompt")
PROMPT = 'In this sentence "{sentence}", "{word}" means in one word: "'
_PUNCT = string.punctuation + "“”‘’«»„…—–"


class WicItemError(UserError):
    """One item cannot be used; ``reason`` is the drop category."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


# ------------------------------------------------------------------------ tokens
def token_span(tokenizer, text: str, start: int, end: int) -> tuple[list[int], tuple[int, int]]:
    """Tokens covering characters ``[start, end)`` of ``text``, as the model core tokenizes it.

    Returns their ids and the half-open token range ``(t0, t1)`` in the coordinates of
    ``tokenizer(text, add_special_tokens=True)`` (BOS included), i.e. the coordinates
    ``HubModel.capture`` uses for ``spans``. Needs a fast tokenizer (offset mapping).
    """
    if not 0 <= start < end <= len(text):
        raise UserError(f"character span ({start}, {end}) is outside the text of {len(text)} characters: {text!r}")
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("token_span needs a fast tokenizer (offset mapping); got " + type(tokenizer).__name__)
    enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
    hit = [i for i, (a, b) in enumerate(enc["offset_mapping"]) if b > a and a < end and b > start]
    if not hit:
        raise WicItemError("no token covers the word", f"characters {start}..{end} of {text!r}")
    t0, t1 = hit[0], hit[-1] + 1
    return list(enc["input_ids"][t0:t1]), (t0, t1)


# ------------------------------------------------------------------------ words
def word_spans(sentence: str) -> list[tuple[int, int]]:
    """Character spans of the whitespace-separated words (WiC's index convention)."""
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", sentence)]


def strip_punct(sentence: str, start: int, end: int) -> tuple[int, int]:
    """Shrink a word span past leading/trailing punctuation (``"bank,"`` -> ``bank``)."""
    while start < end and sentence[start] in _PUNCT:
        start += 1
    while end > start and sentence[end - 1] in _PUNCT:
        end -= 1
    return start, end


def looks_like(target: str, word: str, lang: str = "en") -> bool:
    """Is ``word`` a form of ``target``? English: an ordinary inflection (regular rules and
    irregulars, modalities.inflections: carry/carried, run/ran, child/children). Other languages
    (no rules here): also a shared stem, a crude prefix match (``Flügel``/``Flügeln``)."""
    t, w = target.lower().strip(), word.lower().strip(_PUNCT)
    if is_inflection(t, w):
        return True
    if lang == "en":
        return False
    stem = t if len(t) <= 3 else t[: max(3, len(t) - 1)]
    return w.startswith(stem) or t.startswith(w) and len(w) >= 3


def locate(sentence: str, target: str, index: int | None, lang: str = "en") -> tuple[tuple[int, int], bool]:
    """Character span of the target word and whether it looks like the target.

    ``index`` is the WiC word index; ``None`` searches the sentence for the target.
    Raises :class:`WicItemError` for an index outside the sentence or a target not found.
    """
    spans = word_spans(sentence)
    if index is None:
        for s, e in spans:
            s, e = strip_punct(sentence, s, e)
            if e > s and looks_like(target, sentence[s:e], lang):
                return (s, e), True
        raise WicItemError("target word not in its sentence", f"{target!r} in {sentence!r}")
    if not 0 <= index < len(spans):
        raise WicItemError("index out of range", f"word {index} of a {len(spans)}-word sentence {sentence!r}")
    s, e = strip_punct(sentence, *spans[index])
    if e <= s:
        raise WicItemError("index points at punctuation", f"word {index} of {sentence!r}")
    return (s, e), looks_like(target, sentence[s:e], lang)


# ------------------------------------------------------------------------ items
@dataclass
class WicItem:
    """One WiC pair (``label`` True = same sense) or graded pair (``score``)."""

    target: str
    pos: str
    idx1: int | None
    idx2: int | None
    s1: str
    s2: str
    label: bool | None = None
    score: float | None = None
    where: str = ""  # file:line, for messages
    spans: tuple[tuple[int, int], tuple[int, int]] | None = None  # char spans once located

    @property
    def words(self) -> tuple[str, str]:
        (a, b), (c, d) = self.spans
        return self.s1[a:b], self.s2[c:d]


@dataclass
class WicSet:
    """Located items per split, with what was dropped or noted on the way."""

    name: str
    splits: dict[str, list[WicItem]]
    drops: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)


def _parse_index(field_: str, where: str) -> tuple[int | None, int | None]:
    f = field_.strip()
    if f in ("", "-"):
        return None, None
    m = re.fullmatch(r"(-?\d+)-(-?\d+)", f)
    if not m:
        raise UserError(f"{where}: index field {field_!r} is malformed; expected 'i-j' (word indices of the target "
                         "in sentence 1 and sentence 2)")
    return int(m.group(1)), int(m.group(2))


def read_wic(data: str | Path, gold: str | Path | None = None) -> list[WicItem]:
    """Read a ``*.data.txt`` file (and its ``*.gold.txt`` if given)."""
    data = Path(data)
    if not data.is_file():
        raise UserFileError(f"{data}: no such WiC data file (expected tab-separated target, POS, i-j, "
                                "sentence 1, sentence 2)")
    items = []
    for ln, line in enumerate(data.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        where = f"{data}:{ln}"
        if len(parts) != 5:
            raise UserError(f"{where}: expected 5 tab-separated fields (target, POS, i-j, sentence 1, sentence 2), "
                             f"got {len(parts)}")
        i, j = _parse_index(parts[2], where)
        items.append(WicItem(parts[0].strip(), parts[1].strip(), i, j, parts[3].strip(), parts[4].strip(),
                             where=where))
    if gold is not None:
        gold = Path(gold)
        labels = [g.strip() for g in gold.read_text(encoding="utf-8").splitlines() if g.strip()]
        if len(labels) != len(items):
            raise UserError(f"{gold}: {len(labels)} labels for {len(items)} items in {data}; "
                             "expected one T/F per line")
        for k, (it, g) in enumerate(zip(items, labels), start=1):
            if g not in ("T", "F"):
                raise UserError(f"{gold}:{k}: label {g!r}; expected T or F")
            it.label = g == "T"
    return items


def split_files(root: str | Path, split: str) -> tuple[Path, Path | None]:
    """``{split}.data.txt`` (and its gold file, if present) anywhere under ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise UserFileError(f"{root}: no such WiC directory (expected {{train,dev,test}}.data.txt and "
                                ".gold.txt files)")
    found = sorted(root.rglob(f"{split}.data.txt")) or sorted(root.rglob(f"*{split}*.data.txt"))
    if not found:
        raise UserFileError(f"{root}: no {split}.data.txt (expected files named like {split}.data.txt)")
    if len(found) > 1:
        raise UserError(f"{root}: several data files for split {split!r}: {[str(p) for p in found]}")
    gold = found[0].with_name(found[0].name.replace(".data.txt", ".gold.txt"))
    return found[0], (gold if gold.is_file() else None)


def locate_items(items: Sequence[WicItem], drops: Counter, notes: Counter, check_target: str = "warn",
                 lang: str = "en") -> list[WicItem]:
    """Find the target in both sentences; drop (counted) what cannot be read; ``lang`` picks the
    target check (see looks_like)."""
    if check_target not in ("warn", "drop", "off"):
        raise UserError(f"check_target={check_target!r}: expected warn, drop or off")
    out = []
    for it in items:
        try:
            sp1, ok1 = locate(it.s1, it.target, it.idx1, lang)
            sp2, ok2 = locate(it.s2, it.target, it.idx2, lang)
        except WicItemError as e:
            drops[e.reason] += 1
            log.warning("%s: %s: dropped", it.where, e)
            continue
        if check_target != "off" and not (ok1 and ok2):
            if check_target == "drop":
                drops["indexed word does not match target"] += 1
                continue
            notes["indexed word does not look like the target (kept)"] += 1
        out.append(replace(it, spans=(sp1, sp2)))
    return out


def load_wic(root: str | Path, name: str | None = None, splits: Sequence[str] = ("train", "dev", "test"),
             check_target: str = "warn", max_items: int | None = None, seed: int = 0) -> WicSet:
    """Load and locate a WiC directory; ``max_items`` subsamples each split (seeded). A set named
    by a language code (``de``: XL-WiC style) is in that language, any other name in English."""
    ws = WicSet(name or Path(root).name, {})
    lang = ws.name if ws.name in iso_codes() else "en"
    for split in splits:
        data, gold = split_files(root, split)
        items = locate_items(read_wic(data, gold), ws.drops, ws.notes, check_target, lang)
        if max_items and len(items) > max_items:
            items = [items[i] for i in sorted(random.Random(seed).sample(range(len(items)), max_items))]
        ws.splits[split] = items
    return ws


def read_graded(path: str | Path, column: str = "mean_relatedness", drops: Counter | None = None,
                notes: Counter | None = None, check_target: str = "warn") -> list[WicItem]:
    """RAW-C-style graded pairs (CSV, or TSV by ``.tsv`` suffix) with a numeric ``column``."""
    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"{path}: no such graded file (expected columns word, sentence1, sentence2, {column})")
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ","))
    cols = set(rows[0]) if rows else set()
    word_col = "word" if "word" in cols else "target"
    missing = [c for c in (word_col, "sentence1", "sentence2", column) if c not in cols]
    if missing:
        raise UserError(f"{path}: missing column(s) {missing}; the file has {sorted(cols)}")
    items = []
    for k, r in enumerate(rows, start=2):
        where = f"{path}:{k}"
        try:
            score = float(r[column])
        except ValueError:
            raise UserError(f"{where}: {column}={r[column]!r} is not a number") from None
        idx = [int(r[c]) if r.get(c, "").strip() not in ("", None) else None for c in ("index1", "index2")]
        items.append(WicItem(r[word_col].strip(), r.get("pos", ""), idx[0], idx[1], r["sentence1"].strip(),
                             r["sentence2"].strip(), score=score, where=where))
    return locate_items(items, drops if drops is not None else Counter(), notes if notes is not None else Counter(),
                        check_target)


# ------------------------------------------------------------------------ inputs per mode
@dataclass(frozen=True)
class ModeInput:
    """The text the model reads for one sentence, and where to read it."""

    text: str
    span: tuple[int, int] | None  # token range (BOS included) to average; None = last token


def mode_input(tokenizer, sentence: str, span: tuple[int, int], mode: str, template: str = PROMPT) -> ModeInput:
    """Build one sentence's input for ``mode`` (see module docstring)."""
    if mode not in MODES:
        raise UserError(f"mode={mode!r}: expected one of {MODES}")
    s, e = span
    if mode == "prompt":
        return ModeInput(template.format(sentence=sentence, word=sentence[s:e]), None)
    if mode == "base":
        return ModeInput(sentence, token_span(tokenizer, sentence, s, e)[1])
    text = sentence + " " + sentence
    off = len(sentence) + 1
    t0, t1 = token_span(tokenizer, text, s + off, e + off)[1]
    return ModeInput(text, (t0, t1) if mode == "repeat" else (t0 - 1, t1 - 1))


def mode_sides(tokenizer, items: Sequence[WicItem], mode: str, template: str = PROMPT) -> tuple[Side, Side]:
    """The two sentences of each item as paired sides for ``mode``: the target word's tokens
    averaged (``positions="mean"`` over its span) or, for ``prompt``, the last token."""
    sides = []
    for which in (0, 1):
        inputs = [mode_input(tokenizer, (it.s1, it.s2)[which], it.spans[which], mode, template) for it in items]
        texts = [m.text for m in inputs]
        if mode == "prompt":
            sides.append(Side(texts, "text", "last", label=f"sentence {which + 1}"))
        else:
            sides.append(Side(texts, "text", "mean", spans=[m.span for m in inputs], label=f"sentence {which + 1}"))
    return sides[0], sides[1]
