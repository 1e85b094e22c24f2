"""Running-text lens: dictionaries, word positions, drops."""
import base64
from collections import Counter

import pytest

from experiments.running_text import load_paragraphs, word_positions
from hub.models.tiny import tiny_tokenizer
from modalities.dictionary import glossed_words, load_cedict, load_freedict, load_tsv

CEDICT = """# CC-CEDICT sample
貓 猫 [mao1] /cat/CL:隻|只[zhi1]/
狗 狗 [gou3] /dog/
喝水 喝水 [he1 shui3] /to drink water/
水 水 [shui3] /water/river/
花 花 [hua1] /flower/to spend (money)/
"""


def test_cedict_parse_and_gloss(tmp_path):
    p = tmp_path / "cedict.txt"
    p.write_text(CEDICT, encoding="utf-8")
    d = load_cedict(p)
    assert d.gloss("猫") == "cat" and d.gloss("水") == "water" and d.gloss("喝水") is None
    assert d.segment("狗喝水") == ["狗", "喝水"]
    assert glossed_words("狗喝水。", d, spaced=False) == [("狗", "dog"), ("喝水", None)]
    bad = tmp_path / "bad.txt"
    bad.write_text("not a dictionary\n")
    with pytest.raises(ValueError, match="no CC-CEDICT entries"):
        load_cedict(bad)


def test_shipped_cedict_is_large():
    d = load_cedict()
    assert len(d) > 100_000 and d.gloss("狗") == "dog"


def _b64(n: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    s = ""
    while True:
        s = alphabet[n % 64] + s
        n //= 64
        if n == 0:
            return s


def test_freedict_dictd_format_inverted(tmp_path):
    entries = [("cat", "cat /kat/\nchat"), ("dog", "dog /dɒg/\nchien, toutou")]
    data, index, off = b"", [], 0
    for head, body in entries:
        b = body.encode()
        index.append(f"{head}\t{_b64(off)}\t{_b64(len(b))}")
        data += b
        off += len(b)
    (tmp_path / "eng-fra.index").write_text("\n".join(index), encoding="utf-8")
    (tmp_path / "eng-fra.dict").write_bytes(data)
    d = load_freedict(tmp_path / "eng-fra.index", tmp_path / "eng-fra.dict", "fr")
    assert d.gloss("chien") == "dog" and d.gloss("chat") == "cat" and d.gloss("toutou") == "dog"


def test_tsv_dictionary_and_errors(tmp_path):
    p = tmp_path / "de.tsv"
    p.write_text("Hund\tdog\nKatze\tcat\n", encoding="utf-8")
    d = load_tsv(p, "de")
    assert glossed_words("Der Hund und die Katze.", d, spaced=True) == [
        ("Der", None), ("Hund", "dog"), ("und", None), ("die", None), ("Katze", "cat")]
    p.write_text("Hund dog\n")
    with pytest.raises(ValueError, match="line 1"):
        load_tsv(p, "de")


def test_word_positions_point_at_token_before_word():
    tok = tiny_tokenizer()
    text = "Le chat sat on the mat."
    drops = Counter()
    pos = word_positions(tok, text, [("Le", None), ("chat", "cat"), ("sat", "sat"), ("zzz", "x")], drops)
    enc = tok(text, return_offsets_mapping=True)
    for idx, surface, _ in pos:
        nxt = enc["offset_mapping"][idx + 1]
        assert text[nxt[0]:nxt[1]].strip().startswith(surface[0])
    assert [p[1] for p in pos] == ["chat", "sat"]
    assert drops == Counter({"no single-word English translation": 1, "word not found in text": 1})


def test_load_paragraphs_jsonl_and_missing(tmp_path):
    paras = load_paragraphs(__import__("pathlib").Path("modalities/data/running_text"), "fr", None)
    assert len(paras) >= 3 and all(words for _, words in paras)
    with pytest.raises(FileNotFoundError, match="no running text for 'xx'"):
        load_paragraphs(tmp_path, "xx", None)
    (tmp_path / "de.txt").write_text("Der Hund.")
    with pytest.raises(ValueError, match="dictionaries.de"):
        load_paragraphs(tmp_path, "de", None)
