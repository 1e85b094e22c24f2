"""Token sets of a word for any tokenizer (Wendler et al. 2024).

The probability a layer gives to a language's word is the summed next-token probability of
every token that could start writing it: all prefixes of the word that are vocabulary
tokens, with and without the tokenizer's word-boundary marker (SentencePiece ``▁``,
byte-level ``Ġ``), plus the first token the tokenizer actually emits (which is the first
byte token for CJK when the tokenizer falls back to bytes). Tokens that decode to nothing
but whitespace are never included.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = keep[:]
    n = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(keep, map(chr, chars)))


@dataclass(frozen=True)
class Scheme:
    """How a tokenizer writes surface text into vocabulary strings."""

    kind: str  # "sentencepiece" | "bytelevel" | "plain"

    def encode(self, text: str) -> str:
        if self.kind == "sentencepiece":
            return text.replace(" ", "▁")
        if self.kind == "bytelevel":
            table = bytes_to_unicode()
            return "".join(table[b] for b in text.encode("utf-8"))
        return text


_SCHEMES: dict[int, Scheme] = {}
_VOCABS: dict[int, dict[str, int]] = {}


def scheme_of(tokenizer) -> Scheme:
    """Detect the word-boundary convention from how the tokenizer spells " é"."""
    key = id(tokenizer)
    if key not in _SCHEMES:
        toks = "".join(tokenizer.convert_ids_to_tokens(tokenizer.encode(" é", add_special_tokens=False)))
        if "▁" in toks:
            kind = "sentencepiece"
        elif "Ġ" in toks or "Ã" in toks:
            kind = "bytelevel"
        else:
            kind = "plain"
        _SCHEMES[key] = Scheme(kind)
    return _SCHEMES[key]


def _vocab(tokenizer) -> dict[str, int]:
    key = id(tokenizer)
    if key not in _VOCABS:
        _VOCABS[key] = tokenizer.get_vocab()
    return _VOCABS[key]


def token_set(tokenizer, word: str) -> frozenset[int]:
    """Ids of every token that can begin ``word`` (see module docstring)."""
    word = word.strip()
    if not word:
        raise ValueError("token_set: empty word")
    scheme, vocab = scheme_of(tokenizer), _vocab(tokenizer)
    ids: set[int] = set()
    for variant in (word, " " + word):
        s = scheme.encode(variant)
        marker_len = len(scheme.encode(" ")) if variant.startswith(" ") else 0
        for i in range(marker_len + 1, len(s) + 1):
            tid = vocab.get(s[:i])
            if tid is not None:
                ids.add(tid)
        emitted = tokenizer.encode(variant, add_special_tokens=False)
        for tid in emitted:
            if _not_blank(tokenizer, tid):
                ids.add(tid)
                break
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return frozenset(t for t in ids if t not in special and _not_blank(tokenizer, t))


def _not_blank(tokenizer, tid: int) -> bool:
    tok = tokenizer.convert_ids_to_tokens(tid)
    if tok.startswith("<0x") and tok.endswith(">") and len(tok) == 6:  # SentencePiece byte fallback
        return not chr(int(tok[3:5], 16)).isspace()
    return bool(tokenizer.decode([tid]).strip())


def lens_drop_reason(target: str, english: str, ts: frozenset, ls: frozenset) -> str | None:
    """Why a (target word, English word) lens item cannot be read cleanly, or None.

    Wendler et al.'s filters: both token sets non-empty and disjoint, and the English word
    not a substring of the target (else p(English) would count the target's own prefix).
    """
    if not ts:
        return "empty target token set"
    if not ls:
        return "empty English token set"
    if ts & ls:
        return "overlapping token sets"
    if english.lower() in target.lower():
        return "English word is a substring of the target"
    return None
