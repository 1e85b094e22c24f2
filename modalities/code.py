"""Code: Python functions ↔ one-line descriptions, and two logit-lens readouts on code.

Input: a JSONL file, one object per function, with ``code`` (the function's source), one
description field per language (``en``, ``fr``, ``zh`` ... as configured) and optionally
``id`` and ``call`` (an example call such as ``rectangle_area(3, 5)``). The project ships
117 functions written for it (modalities/data/code/functions.jsonl); ``data.code=PATH``
takes a user's file. Code that does not parse (``ast.parse``) is never dropped silently:
it is counted, logged with its id and the parser's message, and listed in the report.

Outputs:
* paired sets for similarity: code against its description, one set per language;
* lens tasks (semantic-hub paper, Sec. 4.3):
  - ``commas``: the prefix of a program up to a comma between two items of a Python list
    literal; token sets of `` and``, `` or`` and `` not`` (does the hub read the list
    comma as a conjunction?);
  - ``arguments``: the prefix of ``code + call`` up to the end of one positional argument
    of a call to the function defined above it; token sets of the matching parameter
    name and of the argument's own tokens (does the hub read the argument as its role?).
    Parameters named with fewer than ``min_param_len`` characters (``a``, ``x``) are
    counted drops: their lens token is an English function word or a bare letter.
"""
from __future__ import annotations

import ast
import json
import logging
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.contract import LensPrompts, PairedSet, Side
from hub.errors import UserError, UserFileError
from modalities.arithmetic import exclusive_sets
from modalities.base import Adapter, check_min_pairs, register_adapter
from modalities.wic import token_span

log = logging.getLogger(__name__)
DATA = Path(__file__).parent / "data" / "code"
LIST_WORDS = ("and", "or", "not")


@dataclass
class CodeItem:
    """One function with its descriptions (``descriptions[lang]``) and optional example call."""

    id: str
    code: str
    descriptions: dict[str, str]
    call: str | None = None

    @property
    def program(self) -> str:
        """The function followed by its example call (the text the lens tasks read)."""
        return self.code + ("\n\n" + self.call if self.call else "")


@dataclass
class Unparsable:
    """A function the parser rejected: which one, where and why."""

    id: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.id} (line {self.line}: {self.message})"


def load_functions(path: str | Path, languages: Sequence[str], code_field: str = "code",
                   call_field: str = "call", id_field: str = "id"
                   ) -> tuple[list[CodeItem], list[Unparsable], Counter]:
    """Read and check a JSONL file of functions.

    Returns the parsable items, the unparsable ones (id, line, parser message) and drop
    counts. A missing ``code`` field or description column is an error naming the file and
    line; an empty description is a counted drop; an unparsable call is a counted drop of
    the call only (the function still pairs with its descriptions).
    """
    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"{path}: no such code file (expected JSONL with fields {code_field!r} and "
                                f"one description field per language, e.g. {list(languages)})")
    items: list[CodeItem] = []
    bad: list[Unparsable] = []
    drops: Counter = Counter()
    seen: set[str] = set()
    for ln, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{ln}: not valid JSON ({e.msg}); expected one JSON object per line") from None
        if not isinstance(row, dict) or code_field not in row:
            raise UserError(f"{path}:{ln}: missing field {code_field!r} (expected an object with {code_field!r} "
                             f"and description fields {list(languages)})")
        missing = [lang for lang in languages if lang not in row]
        if missing:
            raise UserError(f"{path}:{ln}: missing description field(s) {missing}; the object has {sorted(row)}")
        fid = str(row.get(id_field, f"line{ln}"))
        if fid in seen:
            raise UserError(f"{path}:{ln}: duplicate {id_field} {fid!r}")
        seen.add(fid)
        code = str(row[code_field])
        try:
            ast.parse(code)
        except SyntaxError as e:
            bad.append(Unparsable(fid, e.lineno, e.msg))
            drops["code does not parse"] += 1
            log.warning("%s:%d: function %s does not parse (line %s: %s): left out and reported",
                        path, ln, fid, e.lineno, e.msg)
            continue
        desc = {lang: str(row[lang]).strip() for lang in languages}
        if any(not d for d in desc.values()):
            drops["empty description"] += 1
            log.warning("%s:%d: function %s has an empty description in %s: dropped", path, ln, fid,
                        [lang for lang, d in desc.items() if not d])
            continue
        call = row.get(call_field)
        if call:
            try:
                ast.parse(call)
            except SyntaxError as e:
                drops["example call does not parse"] += 1
                log.warning("%s:%d: call of %s does not parse (%s): call left out", path, ln, fid, e.msg)
                call = None
        items.append(CodeItem(fid, code, desc, call or None))
    return items, bad, drops


# ------------------------------------------------------------------------ lens sites
def _offsets(text: str) -> list[int]:
    """Character offset of the start of each (1-based) line."""
    starts, pos = [0], 0
    for line in text.splitlines(keepends=True):
        pos += len(line)
        starts.append(pos)
    return starts


def _char(starts: list[int], lineno: int, col: int, text: str) -> int:
    """AST (line, UTF-8 byte column) -> character offset in ``text``."""
    line_start = starts[lineno - 1]
    line = text[line_start:]
    return line_start + len(line.encode("utf-8")[:col].decode("utf-8", errors="ignore"))


def list_commas(program: str) -> list[int]:
    """Character offsets of the commas between items of every list literal (2+ items)."""
    tree, starts = ast.parse(program), _offsets(program)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List) and len(node.elts) >= 2:
            for left, right in zip(node.elts, node.elts[1:]):
                lo = _char(starts, left.end_lineno, left.end_col_offset, program)
                hi = _char(starts, right.lineno, right.col_offset, program)
                k = program.find(",", lo, hi)
                if k >= 0:
                    out.append(k)
    return sorted(out)


@dataclass(frozen=True)
class ArgumentSite:
    """A positional argument of a call: its parameter, its text and where its text ends."""

    param: str
    text: str
    start: int  # char offset of the argument in the program
    end: int  # char offset just past the argument (string arguments: past the last content char)


def argument_sites(item: CodeItem) -> list[ArgumentSite]:
    """Positional arguments of the example call matched to the defined function's parameters.

    Only simple arguments are read: numbers, names and one-word strings (for strings the
    read position is the last character inside the quotes, so the token read is content).
    """
    if not item.call:
        return []
    program = item.program
    tree, starts = ast.parse(program), _offsets(program)
    defs = {n.name: [a.arg for a in n.args.args] for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    offset = len(item.code) + 2  # the call starts after code + blank line
    sites = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in defs):
            continue
        start = _char(starts, node.lineno, node.col_offset, program)
        if start < offset:
            continue  # calls inside the function body are not example calls
        params = defs[node.func.id]
        for param, arg in zip(params, node.args):
            s = _char(starts, arg.lineno, arg.col_offset, program)
            e = _char(starts, arg.end_lineno, arg.end_col_offset, program)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                plain = program[s] in "\"'" and program[e - 1] == program[s] and program[s:s + 3] != program[s] * 3
                if not plain or not arg.value.strip() or " " in arg.value.strip():  # f-, b-, triple-quoted: skip
                    continue
                sites.append(ArgumentSite(param, arg.value, s + 1, e - 1))
            elif isinstance(arg, ast.Name) or (isinstance(arg, ast.Constant) and isinstance(arg.value, (int, float))
                                               and not isinstance(arg.value, bool)):
                sites.append(ArgumentSite(param, program[s:e], s, e))
    return sites


# ------------------------------------------------------------------------ adapter
@register_adapter("code")
class CodeAdapter(Adapter):
    """Code ↔ description pairs per language; list-comma and call-argument lens tasks."""

    modality = "code"

    def __init__(self, path: str | Path = DATA / "functions.jsonl", languages: Sequence[str] = ("en", "fr", "zh"),
                 code_field: str = "code", call_field: str = "call", id_field: str = "id",
                 description_template: str = "{x}", code_template: str = "{x}", positions: str = "last",
                 max_items: int | None = None, lens_items: int | None = 200, token_sets: str = "first",
                 min_param_len: int = 3, seed: int = 0) -> None:
        super().__init__()
        for t in (description_template, code_template):
            if "{x}" not in t:
                raise UserError(f"template {t!r} must contain {{x}} where the code or description goes")
        self.path, self.languages = Path(path), list(languages)
        self.fields = (code_field, call_field, id_field)
        self.description_template, self.code_template = description_template, code_template
        self.positions, self.max_items, self.lens_items = positions, max_items, lens_items
        self.token_sets, self.min_param_len, self.seed = token_sets, min_param_len, seed
        self.unparsable: list[Unparsable] = []
        self._items: list[CodeItem] | None = None

    def describe(self) -> str:
        return f"CodeAdapter ({self.path.name}, descriptions in {self.languages})"

    def items(self) -> list[CodeItem]:
        """The parsable functions (loaded once; unparsable ones recorded in ``self.unparsable``)."""
        if self._items is None:
            items, bad, drops = load_functions(self.path, self.languages, *self.fields)
            self.unparsable, self._items = bad, items
            self.drops.update(drops)
            check_min_pairs(len(items), f"{self.path} after dropping {dict(drops)}")
        return self._items

    def _subsample(self, xs: list, k: int | None) -> list:
        if k and len(xs) > k:
            keep = sorted(random.Random(self.seed).sample(range(len(xs)), k))
            return [xs[i] for i in keep]
        return xs

    # ------------------------------------------------------------ similarity
    def pairs(self, model=None) -> Iterator[PairedSet]:
        """Per language: each function's code against its description."""
        items = self._subsample(self.items(), self.max_items)
        code = [self.code_template.format(x=it.code) for it in items]
        for lang in self.languages:
            yield PairedSet(
                name=f"code-description:{lang}",
                a=Side(code, "code", self.positions, label="code"),
                b=Side([self.description_template.format(x=it.descriptions[lang]) for it in items], "text",
                       self.positions, label=lang),
                ids={"task": "code-description", "lang": lang, "src": "code", "tgt": lang, "modality": "code"},
                items=[it.id for it in items],
            )

    # ------------------------------------------------------------ lens
    def comma_task(self, tokenizer) -> LensPrompts:
        """Prefixes ending at a list comma; sets `` and`` / `` or`` / `` not``."""
        sets, why = exclusive_sets(tokenizer, {w: w for w in LIST_WORDS}, self.token_sets)
        if sets is None:
            raise UserError(f"comma readout: the tokenizer's sets for {LIST_WORDS} are unusable ({why})")
        sites = [(it, k) for it in self.items() for k in list_commas(it.program)]
        sites = self._subsample(sites, self.lens_items)
        prompts = [it.program[:k + 1] for it, k in sites]
        out = LensPrompts(prompts, [[sets[w] for w in LIST_WORDS]] * len(prompts), list(LIST_WORDS),
                          [f"{it.id}@{k}" for it, k in sites], ids={"task": "lens list comma"})
        check_min_pairs(len(prompts), f"{self.path}: list commas")
        return out

    def argument_task(self, tokenizer) -> LensPrompts:
        """Prefixes ending at a call argument; sets: parameter name vs the argument's tokens."""
        drops: Counter = Counter()
        sites = [(it, s) for it in self.items() for s in argument_sites(it)]
        sites = self._subsample(sites, self.lens_items)
        prompts, sets, ids = [], [], []
        for it, s in sites:
            if s.text == s.param:
                drops["argument is spelled like its parameter"] += 1
                continue
            if len(s.param) < self.min_param_len:  # `a`, `b`, `x`: the lens reads them as the word " a"
                drops[f"parameter name shorter than {self.min_param_len} characters"] += 1
                continue
            prompt = it.program[:s.end]
            arg_ids = frozenset(token_span(tokenizer, prompt, s.start, s.end)[0])
            name, why = exclusive_sets(tokenizer, {"parameter": s.param}, self.token_sets)
            if name is None:
                drops[why] += 1
                continue
            shared = name["parameter"] & arg_ids
            param, arg = name["parameter"] - shared, arg_ids - shared
            if not param or not arg:
                drops["parameter and argument share their tokens"] += 1
                continue
            prompts.append(prompt)
            sets.append([param, arg])
            ids.append(f"{it.id}:{s.param}={s.text}")
        self.drops.update({f"arguments: {k}": v for k, v in drops.items()})
        check_min_pairs(len(prompts), f"{self.path}: call arguments after dropping {dict(drops)}")
        return LensPrompts(prompts, sets, ["parameter", "argument"], ids, drops, ids={"task": "lens call argument"})
