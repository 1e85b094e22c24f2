"""Integrity checks for the multilingual data files in ``modalities/data``.

Only the standard library is used (``csv``, ``json``, ``pathlib``) so these
tests can run without installing the project or any model dependencies.
"""

import csv
import json
import unicodedata
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "modalities" / "data"
LANGS = ["en", "de", "fr", "es", "it", "pt", "nl", "ru", "zh", "ja", "ko", "ar"]
CJK_CHAR_LANGS = {"zh", "ja", "ko"}  # corpus size measured in characters
PLACEHOLDER = "___"


def _read_csv(name):
    with open(DATA / name, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames
        rows = list(reader)
    return header, rows


def _non_space_chars(text):
    return sum(1 for ch in text if not ch.isspace())


def _is_punct(ch):
    return unicodedata.category(ch).startswith("P")


# --------------------------------------------------------------------------
# words.csv
# --------------------------------------------------------------------------


def test_words_header_and_size():
    header, rows = _read_csv("words.csv")
    assert header == ["concept"] + LANGS
    assert len(rows) >= 150


def test_words_unique_concepts():
    _, rows = _read_csv("words.csv")
    concepts = [r["concept"] for r in rows]
    assert len(concepts) == len(set(concepts))
    for c in concepts:
        assert c == c.strip().lower() and c, c


def test_words_cells_nonempty_single_token():
    _, rows = _read_csv("words.csv")
    for r in rows:
        for col in ["concept"] + LANGS:
            cell = r[col]
            assert cell is not None and cell != "", (r["concept"], col)
            assert not any(ch.isspace() for ch in cell), (r["concept"], col, cell)


def test_words_no_duplicate_within_language():
    _, rows = _read_csv("words.csv")
    for lang in LANGS:
        seen = {}
        for r in rows:
            w = r[lang]
            assert w not in seen, f"{lang}: {w!r} used for {seen.get(w)} and {r['concept']}"
            seen[w] = r["concept"]


# --------------------------------------------------------------------------
# sentences.csv
# --------------------------------------------------------------------------


def test_sentences():
    header, rows = _read_csv("sentences.csv")
    assert header == ["id"] + LANGS
    assert len(rows) >= 100
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids))
    for r in rows:
        for col in ["id"] + LANGS:
            assert r[col] and r[col].strip() == r[col], (r["id"], col)
        for lang in LANGS:
            text = r[lang]
            assert _is_punct(text[-1]), (r["id"], lang, text)
        for lang in ("zh", "ja"):
            assert r[lang][-1] in "。？！", (r["id"], lang)


# --------------------------------------------------------------------------
# cloze.csv
# --------------------------------------------------------------------------


def test_cloze():
    header, rows = _read_csv("cloze.csv")
    assert header == ["concept", "lang", "sentence"]
    _, words = _read_csv("words.csv")
    concepts = {r["concept"] for r in words}
    pairs = set()
    for r in rows:
        assert r["sentence"].count(PLACEHOLDER) == 1, r
        # no longer runs of underscores that would hide the placeholder
        assert "____" not in r["sentence"], r
        assert r["concept"] in concepts, r
        assert r["lang"] in LANGS, r
        key = (r["concept"], r["lang"])
        assert key not in pairs, f"duplicate cloze row {key}"
        pairs.add(key)
    covered = [c for c in concepts if all((c, l) in pairs for l in LANGS)]
    assert len(covered) >= 60


# --------------------------------------------------------------------------
# running_text/*.jsonl
# --------------------------------------------------------------------------


def _running_records(lang):
    path = DATA / "running_text" / f"{lang}.jsonl"
    assert path.exists(), path
    records = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                records.append(json.loads(line))
    return records


def test_running_text_files_exist():
    for lang in LANGS:
        records = _running_records(lang)
        assert len(records) >= 3, lang


def test_running_text_words_in_order():
    for lang in LANGS:
        for rec in _running_records(lang):
            text = rec["text"]
            assert isinstance(text, str) and text.strip()
            words = rec.get("words")
            if lang == "en" and words is None:
                continue
            assert isinstance(words, list) and words, lang
            pos = 0
            for item in words:
                assert isinstance(item, list) and len(item) == 2, (lang, item)
                surface, gloss = item
                assert isinstance(surface, str) and surface, (lang, item)
                assert gloss is None or (
                    isinstance(gloss, str) and gloss and " " not in gloss
                ), (lang, item)
                idx = text.find(surface, pos)
                assert idx >= 0, f"{lang}: {surface!r} not found after offset {pos}"
                # only whitespace/punctuation may be skipped between words
                gap = text[pos:idx]
                assert all(ch.isspace() or _is_punct(ch) for ch in gap), (lang, surface, gap)
                pos = idx + len(surface)
            tail = text[pos:]
            assert all(ch.isspace() or _is_punct(ch) for ch in tail), (lang, tail)


def test_running_text_paragraph_lengths():
    for lang in LANGS:
        for rec in _running_records(lang):
            text = rec["text"]
            if lang in ("zh", "ja"):
                n = sum(1 for ch in text if not ch.isspace() and not _is_punct(ch))
                assert 60 <= n <= 120, (lang, n)
            else:
                n = len(text.split())
                assert 40 <= n <= 80, (lang, n)


# --------------------------------------------------------------------------
# corpus/*.txt
# --------------------------------------------------------------------------


def test_corpus_sizes():
    for lang in LANGS:
        path = DATA / "corpus" / f"{lang}.txt"
        assert path.exists(), path
        text = path.read_text(encoding="utf-8")
        if lang in CJK_CHAR_LANGS:
            assert _non_space_chars(text) >= 3000, (lang, _non_space_chars(text))
        else:
            assert len(text.split()) >= 1800, (lang, len(text.split()))


def test_corpus_not_repetitive():
    for lang in LANGS:
        text = (DATA / "corpus" / f"{lang}.txt").read_text(encoding="utf-8")
        lines = [ln.strip() for ln in text.splitlines() if len(ln.strip()) > 20]
        assert len(lines) == len(set(lines)), f"{lang}: repeated paragraph"
