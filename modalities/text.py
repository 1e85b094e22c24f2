"""Text in many languages: concept tables, parallel sentences and Wendler-style prompts.

Inputs (UTF-8): a concept table (CSV or JSONL) with one column per ISO 639-1 code and an
optional ``concept`` id column; a parallel-sentence table of the same shape (``id`` column);
optionally a cloze table (``concept, lang, sentence`` with ``___`` for the word).

Outputs: paired sets for similarity (each language against the dominant one, words and
sentences, optionally inside a template such as ``"{x}"`` or the semantic-hub paper's
"This represents" suffix), and lens tasks (translation, repetition, cloze) with the token
sets of the target-language word and of its dominant-language translation.
"""
from __future__ import annotations

import json
import logging
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from hub.contract import LensPrompts, PairedSet, Side
from hub.errors import UserError, UserFileError, UserKeyError
from hub.lens.tokensets import lens_drop_reason, token_set
from modalities.base import Adapter, check_min_pairs, register_adapter

log = logging.getLogger(__name__)
DATA = Path(__file__).parent / "data"
TASKS = ("translation", "repetition", "cloze")


# ----------------------------------------------------------------------------- tables
def iso_codes() -> frozenset[str]:
    return frozenset((DATA / "iso639_1.txt").read_text().split())


def language_info() -> pd.DataFrame:
    """Language names written in their own language, and the cloze 'Answer' word."""
    return pd.read_csv(DATA / "languages.csv", dtype=str).set_index("code")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or JSONL table as strings; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"{path}: no such data file (expected a CSV or JSONL table)")
    try:
        if path.suffix in (".jsonl", ".json"):
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            df = pd.DataFrame(rows, dtype=str)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot parse as {'JSONL' if path.suffix != '.csv' else 'CSV'}: {e}") from e
    return df.fillna("")


@dataclass
class ParallelTable:
    """A validated table: ``rows[i][lang]`` is item i in language lang."""

    path: Path
    ids: list[str]
    cells: dict[str, list[str]]  # lang -> column
    drops: Counter = field(default_factory=Counter)

    @property
    def languages(self) -> list[str]:
        return list(self.cells)

    def column(self, lang: str) -> list[str]:
        if lang not in self.cells:
            raise UserKeyError(f"{self.path}: no column for language {lang!r}; columns: {self.languages}")
        return self.cells[lang]


def load_parallel(path: str | Path, languages: Sequence[str], id_column: str = "concept",
                  single_word: bool = False) -> ParallelTable:
    """Load and check a parallel table for ``languages``.

    Unknown codes, missing columns and duplicate ids are errors naming file, row and column.
    A row with an empty cell in a requested language is dropped and counted (reported).
    """
    path = Path(path)
    df = read_table(path)
    codes = iso_codes()
    for lang in languages:
        if lang not in codes:
            raise UserError(f"{path}: {lang!r} is not an ISO 639-1 language code (expected two letters, e.g. 'fr')")
        if lang not in df.columns:
            raise UserError(f"{path}: missing column {lang!r}; the table has {list(df.columns)}")
    ids = df[id_column].tolist() if id_column in df.columns else [str(i) for i in range(len(df))]
    dup = [k for k, c in Counter(ids).items() if c > 1]
    if dup:
        rows = [i + 2 for i, k in enumerate(ids) if k == dup[0]]
        raise UserError(f"{path}: duplicate {id_column} {dup[0]!r} at rows {rows} (row 1 = header)")
    drops: Counter = Counter()
    keep = []
    col = {lang: [str(v).strip() for v in df[lang].tolist()] for lang in languages}  # columns, not row lookups
    for i in range(len(df)):
        empty = [lang for lang in languages if not col[lang][i]]
        if empty:
            drops["empty cell"] += 1
            log.warning("%s: row %d (%s=%r) has an empty cell in column(s) %s: dropped", path, i + 2, id_column,
                        ids[i], empty)
            continue
        if single_word and any(" " in col[lang][i] for lang in languages):
            drops["not a single word"] += 1
            continue
        keep.append(i)
    _check_duplicate_rows(path, keep, col, languages)
    cells = {lang: [col[lang][i] for i in keep] for lang in languages}
    table = ParallelTable(path, [ids[i] for i in keep], cells, drops)
    check_min_pairs(len(table.ids), f"{path} (languages {list(languages)})")
    return table


def _check_duplicate_rows(path: Path, keep: Sequence[int], col: Mapping[str, list[str]],
                          languages: Sequence[str]) -> None:
    """Rows holding the same words in every language as an earlier row are an error naming them
    (they would pair identical inputs, and a table of copies has nothing to compare)."""
    first: dict[tuple[str, ...], int] = {}
    dups: list[tuple[int, int]] = []  # (row, the earlier row it repeats), 0-based
    for i in keep:
        key = tuple(col[lang][i] for lang in languages)
        if key in first:
            dups.append((i, first[key]))
        else:
            first[key] = i
    if dups:
        shown = ", ".join(f"row {i + 2} = row {j + 2}" for i, j in dups[:10]) + (", ..." if len(dups) > 10 else "")
        raise UserError(f"{path}: {len(dups)} of {len(keep)} rows are duplicates, the same words in every language "
                        f"{list(languages)} as an earlier row ({shown}; row 1 = header); expected one row per item")


# ---------------------------------------------------------------------------- prompts
@register_adapter("text")
class TextAdapter(Adapter):
    """Multilingual text: similarity pairs and Wendler et al. lens tasks."""

    modality = "text"

    def __init__(self, words: str | Path = DATA / "words.csv", sentences: str | Path | None = DATA / "sentences.csv",
                 cloze: str | Path | None = DATA / "cloze.csv", languages: Sequence[str] | None = None,
                 dominant: str = "en", units: Sequence[str] = ("words", "sentences"),
                 word_template: str = "{x}", sentence_template: str = "{x}", positions: str = "last",
                 n_shots: int = 4, max_items: int | None = None, seed: int = 0,
                 lang_names: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.words_path, self.sentences_path, self.cloze_path = words, sentences, cloze
        info = language_info()
        self.dominant, self.units, self.positions = dominant, list(units), positions
        self.skipped = self._own_data_only()
        self.languages = list(languages) if languages else self._table_languages()
        if dominant not in self.languages:
            self.languages = [dominant, *self.languages]
        for t in (word_template, sentence_template):
            if "{x}" not in t:
                raise UserError(f"template {t!r} must contain {{x}} where the word or sentence goes")
        self.word_template, self.sentence_template = word_template, sentence_template
        self.n_shots, self.max_items, self.seed = n_shots, max_items, seed
        self.lang_names = {c: info.loc[c, "native"] for c in info.index}
        self.answer_words = {c: info.loc[c, "answer"] for c in info.index}
        self.lang_names.update(lang_names or {})

    # ------------------------------------------------------------- data sources
    def _sources(self) -> dict[str, Path]:
        """The table of each similarity unit this run compares."""
        paths = {"words": self.words_path, "sentences": self.sentences_path}
        return {u: Path(paths[u]) for u in self.units if paths.get(u) is not None and u not in self.skipped}

    def _own_data_only(self) -> dict[str, str]:
        """Units left out because their table is the shipped one while the user gave another:
        a run on your own words never mixes in the project's sentences unseen (or vice versa)."""
        paths = {"words": self.words_path, "sentences": self.sentences_path}
        used = {u: Path(p) for u, p in paths.items() if u in self.units and p is not None}
        shipped = {u for u, p in used.items() if _shipped(p)}
        if not shipped or shipped == set(used):
            return {}
        own = ", ".join(f"data.{u}={used[u]}" for u in used if u not in shipped)
        return {u: f"the shipped {used[u].name} is left out because you gave {own} "
                   f"(data.{u}=PATH adds your own {u})" for u in sorted(shipped)}

    def _table_languages(self) -> list[str]:
        """A run's default languages: the columns of its first table but the id; the dominant one required."""
        sources = self._sources() or {"words": Path(self.words_path)}
        unit, path = next(iter(sources.items()))
        id_col = "concept" if unit == "words" else "id"
        langs = [c for c in read_table(path).columns if c != id_col]  # others: checked by load_parallel
        if self.dominant not in langs:
            raise UserError(f"{path}: no column for the dominant language {self.dominant!r} (every language is "
                            f"compared with it; the table has {langs}); expected a column {self.dominant!r}, or "
                            f"model.dominant_lang set to one of the table's languages")
        return langs

    def describe(self) -> str:
        """The adapter and which file each unit came from (in the report)."""
        used = "; ".join(f"{u} from {p}" for u, p in self._sources().items())
        skipped = "".join(f"; {u} not compared: {why}" for u, why in self.skipped.items())
        return f"{type(self).__name__} ({self.modality}: {used}{skipped}; languages {self.languages})"

    # ------------------------------------------------------------- similarity
    def _limit(self, n: int) -> list[int]:
        idx = list(range(n))
        if self.max_items and n > self.max_items:
            idx = sorted(random.Random(self.seed).sample(idx, self.max_items))
        return idx

    def pairs(self, model=None) -> Iterator[PairedSet]:
        """Each language against the dominant one, for words and sentences."""
        sources = {"words": (self.words_path, "concept", self.word_template),
                   "sentences": (self.sentences_path, "id", self.sentence_template)}
        for unit in self.units:
            if unit not in sources:
                raise UserError(f"units: unknown unit {unit!r}; expected 'words' or 'sentences'")
            path, id_col, template = sources[unit]
            if path is None or unit in self.skipped:
                continue
            table = load_parallel(path, self.languages, id_column=id_col, single_word=(unit == "words"))
            self.drops.update({f"{unit}: {k}": v for k, v in table.drops.items()})
            idx = self._limit(len(table.ids))
            dom = [template.format(x=table.column(self.dominant)[i]) for i in idx]
            for lang in self.languages:
                if lang == self.dominant:
                    continue
                xs = [template.format(x=table.column(lang)[i]) for i in idx]
                yield PairedSet(
                    name=f"{unit}:{lang}-{self.dominant}",
                    a=Side(xs, "text", self.positions, label=lang),
                    b=Side(dom, "text", self.positions, label=self.dominant),
                    ids={"task": unit, "lang": lang, "src": lang, "tgt": self.dominant, "modality": "text"},
                    items=[table.ids[i] for i in idx],
                )

    # ------------------------------------------------------------- lens tasks
    def lens_task(self, task: str, src: str, tgt: str, tokenizer,
                  latents: Sequence[str] | None = None) -> LensPrompts:
        """Build Wendler et al. prompts for ``task`` and the token sets of the answers.

        translation: ``n_shots`` random example pairs ``{src}: "x" - {tgt}: "y"`` then the
        query ending ``{tgt}: "``; repetition: the same with src = tgt; cloze: masked
        sentences in ``tgt`` with their answers, then the query sentence. The token sets are
        named ``[tgt, *latents]`` (target word, then its translation into each candidate latent
        language; default ``[dominant]``; a candidate equal to ``tgt`` is left out). Items are
        dropped by Wendler et al.'s filters against the first candidate; a further candidate
        whose word cannot be read cleanly on an item (empty token set, overlap with the target's
        or an earlier candidate's set, a substring of the target) gets an empty set there and is
        counted in ``drops`` as ``candidate <lang> not read: <reason>`` (the item stays).
        """
        if task not in TASKS:
            raise UserError(f"task={task!r}: expected one of {TASKS}")
        if task in ("repetition", "cloze"):
            src = tgt
        given = list(dict.fromkeys(latents)) if latents else [self.dominant]
        cands = [c for c in given if c != tgt]
        if not cands and not latents:
            raise UserError(f"tgt={tgt!r} is the dominant language; the readout compares the target "
                             f"language with {self.dominant!r}, so choose another target")
        if not cands:
            raise UserError(f"tgt={tgt!r} is the only candidate latent language (latent_langs={given}); the readout "
                             "compares the target language with another, so choose another target or add a candidate")
        for lang in (src, tgt, *cands):
            if lang not in self.lang_names:
                raise UserError(f"no language name for {lang!r}; give one with lang_names={{{lang}: ...}}")
        langs = list(dict.fromkeys([*cands, src, tgt]))
        table = load_parallel(self.words_path, langs, id_column="concept", single_word=True)
        drops = Counter(table.drops)
        words = {lang: table.column(lang) for lang in langs}
        rng = random.Random(self.seed)
        cloze = self._cloze_sentences(tgt) if task == "cloze" else {}
        prompts, concepts, tsets, lsets = [], [], [], []
        candidates = [i for i in range(len(table.ids)) if task != "cloze" or table.ids[i] in cloze]
        drops["no cloze sentence"] += len(table.ids) - len(candidates) if task == "cloze" else 0
        for i in [candidates[j] for j in self._limit(len(candidates))]:
            concept, target, english = table.ids[i], words[tgt][i], words[cands[0]][i]
            ts, ls = token_set(tokenizer, target), token_set(tokenizer, english)
            reason = lens_drop_reason(target, english, ts, ls)
            if reason:
                drops[reason] += 1
                continue
            extra = self._extra_sets(tokenizer, cands[1:], words, i, target, ts, [ls], drops)
            if task == "cloze":
                others = [j for j in range(len(table.ids)) if j != i and table.ids[j] in cloze]
                if len(others) < self.n_shots:
                    raise UserError(f"cloze: only {len(others)} example sentences in {tgt!r}; need {self.n_shots}")
                shots = rng.sample(others, self.n_shots)
                ans = self.answer_words.get(tgt, "Answer")
                lines = [f'{cloze[table.ids[j]]} {ans}: "{words[tgt][j]}"' for j in shots]
                prompt = "\n".join(lines + [f'{cloze[concept]} {ans}: "'])
            else:
                others = [j for j in range(len(table.ids)) if j != i]
                shots = rng.sample(others, self.n_shots)
                s_name, t_name = self.lang_names[src], self.lang_names[tgt]
                lines = [f'{s_name}: "{words[src][j]}" - {t_name}: "{words[tgt][j]}"' for j in shots]
                prompt = "\n".join(lines + [f'{s_name}: "{words[src][i]}" - {t_name}: "'])
            prompts.append(prompt)
            concepts.append(concept)
            tsets.append(ts)
            lsets.append([ls, *extra])
        drops = Counter({k: v for k, v in drops.items() if v})
        self.drops.update({f"{task} {src}->{tgt}: {k}": v for k, v in drops.items()})
        check_min_pairs(len(prompts), f"{task} {src}->{tgt} after dropping {dict(drops)}")
        return LensPrompts(prompts, [[t, *ls] for t, ls in zip(tsets, lsets)], [tgt, *cands], concepts, drops,
                           ids={"task": task, "src": src, "tgt": tgt})

    @staticmethod
    def _extra_sets(tokenizer, cands: Sequence[str], words: dict, i: int, target: str, ts: frozenset,
                    earlier: list[frozenset], drops: Counter) -> list[frozenset]:
        """Token sets of the further candidate latent languages of item ``i``: an empty set (and
        a ``drops`` count) where one cannot be read cleanly (Wendler et al.'s filters against the
        target word, or overlap with an earlier candidate's set)."""
        out = []
        for c in cands:
            word = words[c][i]
            cs = token_set(tokenizer, word)
            reason = lens_drop_reason(target, word, ts, cs)
            if reason is None and any(cs & e for e in earlier):
                reason = "overlaps an earlier candidate's token set"
            if reason:
                drops[f"candidate {c} not read: {reason.replace('English', 'candidate')}"] += 1
                cs = frozenset()
            out.append(cs)
            earlier = [*earlier, cs]
        return out

    def _cloze_sentences(self, lang: str) -> dict[str, str]:
        if self.cloze_path is None:
            raise UserError("task=cloze needs a cloze table (data.cloze=PATH)")
        if _shipped(self.cloze_path) and not _shipped(self.words_path):
            raise UserError(f"task=cloze with your own words ({self.words_path}) and the shipped cloze table "
                            f"({self.cloze_path}), which is written for the shipped words; expected your cloze "
                            "table: data.cloze=PATH (columns concept, lang, sentence)")
        df = read_table(self.cloze_path)
        for col in ("concept", "lang", "sentence"):
            if col not in df.columns:
                raise UserError(f"{self.cloze_path}: missing column {col!r}; expected concept, lang, sentence")
        out = {}
        for i, row in df[df["lang"] == lang].iterrows():
            if row["sentence"].count("___") != 1:
                raise UserError(f"{self.cloze_path}: row {i + 2}: sentence must contain '___' exactly once")
            out[row["concept"]] = row["sentence"]
        return out


def _shipped(path: str | Path) -> bool:
    """Is ``path`` one of the project's own data files (modalities/data/)?"""
    return Path(path).resolve().is_relative_to(DATA.resolve())
