"""Arithmetic: expressions and their words (``5+3`` ↔ ``five plus three``), and lens prompts.

Inputs: either generated expressions (seeded; operands and results in 0..100, operators from
``ops``) or a user's file with one expression per line (``expressions=PATH``). Malformed
lines are counted drops that name the line; :func:`parse_expression` raises on them.

Outputs:
* paired sets for similarity: side a = the expression as symbols, side b = its words in one
  language (number words from modalities/numbers.py), one set per language;
* a lens task (semantic-hub paper, Sec. 4): prompts ``c=a+`` whose answer is ``b`` (with a
  few solved examples first), and per item the token sets of the answer as a digit and as a
  number word in each language, so the logit lens can ask which form a layer predicts.

Token sets here are *first tokens* (the first token the tokenizer writes for the word, with
and without a leading space), not Wendler et al.'s all-prefixes sets: number and function
words are short, and their one- and two-letter prefixes (``▁t``, ``▁th``) are shared by
thousands of unrelated words. Sets are made mutually exclusive per item; an item whose sets
coincide (English and French both write ``six``) is dropped and counted.
"""
from __future__ import annotations

import logging
import random
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.contract import LensPrompts, PairedSet, Side
from hub.errors import UserError, UserFileError
from hub.lens.tokensets import token_set
from modalities.base import Adapter, check_min_pairs, register_adapter
from modalities.numbers import LANGUAGES, MAX_NUMBER, spell_expression, number_word

log = logging.getLogger(__name__)
OPS: tuple[str, ...] = ("+", "-", "*", "/")
_EXPR = re.compile(r"^\s*(\d+)\s*([+\-*/×÷])\s*(\d+)\s*$")
_ALIASES = {"×": "*", "÷": "/"}


# ------------------------------------------------------------------------ expressions
@dataclass(frozen=True)
class Expression:
    """``a op b = value`` with every number in 0..100."""

    a: int
    op: str
    b: int

    @property
    def value(self) -> int:
        return _apply(self.a, self.op, self.b)

    def symbols(self, fmt: str = "{a}{op}{b}") -> str:
        return fmt.format(a=self.a, op=self.op, b=self.b)

    def words(self, lang: str) -> str:
        return spell_expression(self.a, self.op, self.b, lang)


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0 or a % b:
        raise UserError(f"{a}/{b} is not an exact division")
    return a // b


def parse_expression(text: str) -> Expression:
    """``"5+3"`` / ``"4 * 6"`` / ``"8÷2"`` -> Expression; anything else is a ValueError naming it.

    Operands and the result must be integers in 0..100 (the range number words cover).
    """
    m = _EXPR.match(text)
    if not m:
        raise UserError(f"malformed expression {text!r}: expected 'a OP b' with integers a, b and OP one of "
                         f"+ - * / (e.g. '5+3')")
    a, op, b = int(m.group(1)), _ALIASES.get(m.group(2), m.group(2)), int(m.group(3))
    for x in (a, b):
        if x > MAX_NUMBER:
            raise UserError(f"expression {text!r}: operand {x} is outside 0..{MAX_NUMBER}")
    try:
        v = _apply(a, op, b)
    except ValueError as e:
        raise UserError(f"expression {text!r}: {e}") from None
    if not 0 <= v <= MAX_NUMBER:
        raise UserError(f"expression {text!r}: result {v} is outside 0..{MAX_NUMBER}")
    return Expression(a, op, b)


def generate_expressions(n: int, ops: Sequence[str] = ("+", "-", "*"), max_operand: int = 20,
                         seed: int = 0) -> list[Expression]:
    """``n`` distinct expressions, seeded, with operands in 0..max_operand and results in 0..100."""
    bad = [op for op in ops if op not in OPS]
    if bad:
        raise UserError(f"ops: unknown operator(s) {bad}; expected some of {list(OPS)}")
    pool = []
    for op in ops:
        for a in range(max_operand + 1):
            for b in range(max_operand + 1):
                try:
                    v = _apply(a, op, b)
                except ValueError:
                    continue
                if 0 <= v <= MAX_NUMBER:
                    pool.append(Expression(a, op, b))
    if n > len(pool):
        raise UserError(f"asked for {n} expressions but only {len(pool)} exist with ops {list(ops)} and "
                         f"operands 0..{max_operand}")
    return random.Random(seed).sample(pool, n)


def read_expressions(path: str | Path, drops: Counter) -> list[Expression]:
    """One expression per line (blank lines and ``#`` comments skipped); malformed lines are
    counted in ``drops`` and logged with their line number, never silently skipped."""
    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"{path}: no such expressions file (expected one expression per line, e.g. 5+3)")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            out.append(parse_expression(line))
        except ValueError as e:
            drops["malformed expression"] += 1
            log.warning("%s:%d: %s: dropped", path, i, e)
    return out


# ------------------------------------------------------------------------ token sets
def first_tokens(tokenizer, word: str) -> frozenset[int]:
    """Ids of the first token of `` word`` (as written after a space) and of ``word`` when
    that is one whole token.

    The unspaced form's first token is kept only when it is the whole word: tokenizers split
    an unspaced ``drei`` into ``d`` + ``rei``, and a bare ``d`` says nothing about the word.
    Always a subset of :func:`hub.lens.tokensets.token_set` (which adds every prefix token).
    """
    word = word.strip()
    if not word:
        raise UserError("first_tokens: empty word")
    full = token_set(tokenizer, word)
    ids = set()
    spaced = [t for t in tokenizer.encode(" " + word, add_special_tokens=False) if t in full]
    if spaced:
        ids.add(spaced[0])
    bare = tokenizer.encode(word, add_special_tokens=False)
    if len(bare) == 1 and bare[0] in full:
        ids.add(bare[0])
    if not ids:  # e.g. a word the tokenizer only spells with its first byte
        ids.update(t for t in bare[:1] if t in full)
    return frozenset(ids)


def exclusive_sets(tokenizer, words: Mapping[str, str], kind: str = "first"
                   ) -> tuple[dict[str, frozenset[int]] | None, str | None]:
    """Token sets of named words with shared ids removed; ``(None, reason)`` if one empties.

    ``kind``: ``first`` (first tokens) or ``prefix`` (Wendler et al.'s all-prefixes sets).
    """
    if kind not in ("first", "prefix"):
        raise UserError(f"token_sets={kind!r}: expected 'first' or 'prefix'")
    make = first_tokens if kind == "first" else token_set
    sets = {name: make(tokenizer, w) for name, w in words.items()}
    count = Counter(t for s in sets.values() for t in s)
    out = {name: frozenset(t for t in s if count[t] == 1) for name, s in sets.items()}
    for name, s in out.items():
        if not s:
            others = [o for o in sets if o != name and sets[o] & sets[name]]
            why = f"token set of {name} coincides with {'/'.join(others)}" if others else f"empty token set: {name}"
            return None, why
    return out, None


# ------------------------------------------------------------------------ adapter
@register_adapter("arithmetic")
class ArithmeticAdapter(Adapter):
    """Expression ↔ words pairs per language, and ``c=a+`` logit-lens prompts."""

    modality = "arithmetic"

    def __init__(self, languages: Sequence[str] = LANGUAGES, ops: Sequence[str] = ("+", "-", "*"),
                 n_items: int = 100, max_operand: int = 20, expressions: str | Path | None = None,
                 expression_format: str = "{a}{op}{b}", template: str = "{x}", positions: str = "last",
                 lens_languages: Sequence[str] = ("en", "de", "fr", "es", "zh"), lens_answers: Sequence[int] = (1, 9),
                 lens_max_operand: int = 20, lens_items: int | None = 200, n_shots: int = 3,
                 token_sets: str = "first", seed: int = 0) -> None:
        super().__init__()
        for lang in [*languages, *lens_languages]:
            if lang not in LANGUAGES:
                raise UserError(f"language {lang!r}: number words exist for {list(LANGUAGES)}")
        if "{x}" not in template:
            raise UserError(f"template {template!r} must contain {{x}} where the expression goes")
        self.languages, self.ops, self.n_items = list(languages), list(ops), n_items
        self.max_operand, self.expressions_path = max_operand, expressions
        self.expression_format, self.template, self.positions = expression_format, template, positions
        self.lens_languages, self.lens_answers = list(lens_languages), (int(lens_answers[0]), int(lens_answers[1]))
        self.lens_max_operand, self.lens_items, self.n_shots = lens_max_operand, lens_items, n_shots
        self.token_sets, self.seed = token_sets, seed

    def describe(self) -> str:
        src = self.expressions_path or f"{self.n_items} generated, ops {self.ops}, operands 0..{self.max_operand}"
        return f"ArithmeticAdapter ({src})"

    def expressions(self) -> list[Expression]:
        if self.expressions_path is not None:
            exprs = read_expressions(self.expressions_path, self.drops)
            check_min_pairs(len(exprs), f"{self.expressions_path} after dropping {dict(self.drops)}")
            return exprs
        return generate_expressions(self.n_items, self.ops, self.max_operand, self.seed)

    # ------------------------------------------------------------ similarity
    def pairs(self, model=None) -> Iterator[PairedSet]:
        """Per language: the expression (symbols) against its words."""
        exprs = self.expressions()
        sym = [self.template.format(x=e.symbols(self.expression_format)) for e in exprs]
        for lang in self.languages:
            yield PairedSet(
                name=f"expression-words:{lang}",
                a=Side(sym, "arithmetic", self.positions, label="expression"),
                b=Side([self.template.format(x=e.words(lang)) for e in exprs], "text", self.positions, label=lang),
                ids={"task": "expression-words", "lang": lang, "src": "symbols", "tgt": lang, "modality": "arithmetic"},
                items=[e.symbols() for e in exprs],
            )

    # ------------------------------------------------------------ lens
    def lens_pool(self) -> list[Expression]:
        """Every ``a op b`` with the answer b in ``lens_answers`` and a unique answer."""
        lo, hi = self.lens_answers
        pool = []
        for op in self.ops:
            for a in range(self.lens_max_operand + 1):
                for b in range(lo, hi + 1):
                    if op in "*/" and (a == 0 or b == 0):  # 0=0*b has no unique answer
                        continue
                    e = Expression(a * b if op == "/" else a, op, b)
                    try:
                        v = e.value
                    except ValueError:
                        continue
                    if 0 <= v <= MAX_NUMBER and e.a <= MAX_NUMBER:
                        pool.append(e)
        return sorted(set(pool), key=lambda e: (e.op, e.a, e.b))

    def lens_task(self, tokenizer) -> LensPrompts:
        """Prompts ``c=a op`` (answer b) after ``n_shots`` solved examples; token sets of b as a
        digit string and as a number word in each of ``lens_languages``."""
        rng = random.Random(self.seed)
        pool = self.lens_pool()
        chosen = pool if not self.lens_items or len(pool) <= self.lens_items else rng.sample(pool, self.lens_items)
        names = ["digits", *self.lens_languages]
        drops: Counter = Counter()
        prompts, sets, ids, ops = [], [], [], []
        for e in chosen:
            words = {"digits": str(e.b), **{lang: number_word(e.b, lang) for lang in self.lens_languages}}
            ex, why = exclusive_sets(tokenizer, words, self.token_sets)
            if ex is None:
                drops[why] += 1
                continue
            shots = rng.sample([s for s in pool if s.b != e.b], self.n_shots) if self.n_shots else []
            lines = [f"{s.value}={s.a}{s.op}{s.b}" for s in shots] + [f"{e.value}={e.a}{e.op}"]
            prompts.append("\n".join(lines))
            sets.append([ex[n] for n in names])
            ids.append(e.symbols())
            ops.append(e.op)
        self.drops.update({f"lens: {k}": v for k, v in drops.items()})
        check_min_pairs(len(prompts), f"arithmetic lens prompts after dropping {dict(drops)}")
        return LensPrompts(prompts, sets, names, ids, drops, groups=ops, ids={"task": "lens c=a op"})
