"""Text adapter: table validation, prompts, token sets and drops; latent readout on tiny models."""
import pytest

from hub.readout import lens_readout, mean_ci
from hub.models.tiny import tiny_model, tiny_tokenizer
from hub.tokensets import Scheme, bytes_to_unicode, scheme_of, token_set
from modalities.base import ADAPTERS, PairedSet, Side, build
from modalities.text import TextAdapter, load_parallel

HEADER = "concept,en,fr,zh\n"
ROWS = ["dog,dog,chien,狗", "cat,cat,chat,猫", "water,water,eau,水", "book,book,livre,书",
        "flower,flower,fleur,花", "sun,sun,soleil,太阳"]


def write(tmp_path, text, name="words.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_shipped_table_loads_all_languages():
    ad = TextAdapter()
    assert len(ad.languages) >= 10 and {"en", "de", "fr", "es", "ru", "zh", "ja", "ar"} <= set(ad.languages)
    t = load_parallel(ad.words_path, ad.languages, single_word=True)
    assert len(t.ids) >= 150


def test_unknown_language_code(tmp_path):
    p = write(tmp_path, HEADER + "\n".join(ROWS))
    with pytest.raises(ValueError, match=r"'xx' is not an ISO 639-1"):
        load_parallel(p, ["en", "xx"])


def test_missing_column_names_file(tmp_path):
    p = write(tmp_path, HEADER + "\n".join(ROWS))
    with pytest.raises(ValueError, match=r"words.csv: missing column 'de'"):
        load_parallel(p, ["en", "de"])


def test_duplicate_concept_names_rows(tmp_path):
    p = write(tmp_path, HEADER + "\n".join(ROWS + ["dog,hound,chien,犬"]))
    with pytest.raises(ValueError, match=r"duplicate concept 'dog' at rows \[2, 8\]"):
        load_parallel(p, ["en", "fr"])


def test_empty_cell_is_counted_drop(tmp_path):
    p = write(tmp_path, HEADER + "\n".join(ROWS + ["tree,tree,,树"]))
    t = load_parallel(p, ["en", "fr"])
    assert t.drops["empty cell"] == 1 and "tree" not in t.ids and len(t.ids) == 6


def test_fewer_than_four_pairs(tmp_path):
    p = write(tmp_path, HEADER + "\n".join(ROWS[:3]))
    with pytest.raises(ValueError, match="only 3 pairs; at least 4"):
        load_parallel(p, ["en", "fr"])


def test_jsonl_tables(tmp_path):
    import json
    lines = [json.dumps(dict(zip(["concept", "en", "fr", "zh"], r.split(",")))) for r in ROWS]
    p = write(tmp_path, "\n".join(lines), "words.jsonl")
    assert load_parallel(p, ["en", "zh"]).column("zh")[0] == "狗"


def test_bad_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_parallel(tmp_path / "nope.csv", ["en"])


def test_pairs_each_language_against_dominant(tmp_path):
    p = write(tmp_path, HEADER + "\n".join(ROWS))
    ad = TextAdapter(words=p, sentences=None, languages=["en", "fr", "zh"], units=["words"],
                     word_template="{x} This represents")
    sets = list(ad.pairs())
    assert [s.ids["lang"] for s in sets] == ["fr", "zh"]
    assert sets[0].a.inputs[0] == "chien This represents" and sets[0].b.inputs[0] == "dog This represents"
    with pytest.raises(ValueError, match="must contain"):
        TextAdapter(words=p, word_template="no slot")


def test_translation_prompt_format_and_sets(tmp_path):
    p = write(tmp_path, HEADER + "\n".join(ROWS))
    ad = TextAdapter(words=p, sentences=None, languages=["en", "fr", "zh"], n_shots=4, seed=1)
    tok = tiny_tokenizer()
    lt = ad.lens_task("translation", "fr", "zh", tok)
    q = lt.prompts[0].split("\n")
    assert len(q) == 5 and q[-1].startswith('Français: "') and q[-1].endswith('中文: "')
    assert all(" - 中文: \"" in line for line in q)
    for ts, ls in zip(lt.target_sets, lt.latent_sets):
        assert ts and ls and not (ts & ls)
    rep = ad.lens_task("repetition", "fr", "zh", tok)
    assert rep.src == "zh" and '中文: "' in rep.prompts[0].split("\n")[-1]
    with pytest.raises(ValueError, match="dominant language"):
        ad.lens_task("translation", "fr", "en", tok)
    with pytest.raises(ValueError, match="task='poem'"):
        ad.lens_task("poem", "fr", "zh", tok)


def test_lens_task_drops_substrings_and_counts(tmp_path):
    extra = ["house,house,maison,房子", "tree,tree,arbre,树", "bread,bread,pain,面包", "milk,milk,lait,牛奶"]
    rows = ROWS + extra + ["taxi,taxi,taxi,出租车", "piano,piano,piano,钢琴"]
    p = write(tmp_path, HEADER + "\n".join(rows))
    ad = TextAdapter(words=p, sentences=None, languages=["en", "fr", "zh"])
    lt = ad.lens_task("translation", "zh", "fr", tiny_tokenizer())
    # byte-level prefixes: cat/chat, flower/fleur, sun/soleil share a first letter -> overlapping sets
    assert lt.drops["overlapping token sets"] + lt.drops["English word is a substring of the target"] == 5
    assert sum(lt.drops.values()) == 12 - len(lt.prompts)
    assert "taxi" not in lt.concepts and "piano" not in lt.concepts and len(lt.prompts) == 7
    assert any("overlapping" in k for k in ad.drops)


def test_cloze_prompts_use_answer_word():
    ad = TextAdapter(max_items=8)
    lt = ad.lens_task("cloze", "zh", "zh", tiny_tokenizer())
    last = lt.prompts[0].split("\n")[-1]
    assert "___" in last and last.endswith('答案: "') and len(lt.prompts) == 8


def test_bytelevel_token_sets_cover_prefixes_and_first_byte():
    tok = tiny_tokenizer()
    assert scheme_of(tok) == Scheme("bytelevel")
    ids = token_set(tok, "chat")
    vocab = tok.get_vocab()
    for s in ("c", "Ġc"):
        if s in vocab:
            assert vocab[s] in ids
    first_byte = bytes_to_unicode()["狗".encode()[0]]
    assert vocab[first_byte] in token_set(tok, "狗")
    blank = {i for i in ids if not tok.decode([i]).strip()}
    assert not blank
    with pytest.raises(ValueError):
        token_set(tok, "  ")


def test_registry_builds_text_adapter():
    assert ADAPTERS["text"] is TextAdapter
    assert isinstance(build("text", units=["words"]), TextAdapter)
    with pytest.raises(KeyError, match="registered"):
        build("smell")
    with pytest.raises(ValueError, match="align"):
        PairedSet("x", Side(["a", "b"]), Side(["a"]))


def test_lens_readout_rows_and_intervals():
    hm = tiny_model("llama")
    prompts = ['Français: "chien" - 中文: "', 'Français: "chat" - 中文: "', 'Le chat', 'The cat sat']
    sets = [[frozenset({5, 6}), frozenset({7})]] * 4
    df, raw = lens_readout(hm, prompts, sets, ["zh", "en"])
    probs = df[df.metric == "lang_prob"]
    assert set(probs["lang"]) == {"zh", "en"} and len(probs) == 2 * (hm.n_layers + 1)
    assert (probs["ci_low"] <= probs["value"]).all() and (probs["value"] <= probs["ci_high"]).all()
    assert {"entropy", "token_energy"} <= set(df.metric) and df["value"].notna().all()
    assert raw["set_prob"].shape == (4, hm.n_layers + 1, 2)


def test_mean_ci():
    import numpy as np
    m, lo, hi = mean_ci(np.array([[1.0], [3.0]]))
    assert m[0] == 2.0 and lo[0] < 2.0 < hi[0]


# ------------------------------------------------------------ few distinct states at a layer
def test_shared_final_token_is_flagged_and_left_out_of_the_peak():
    """Sentences that all end in the same token hold one state per side at layer 0: the
    results say so (n_distinct) and the report's peak skips that layer."""
    import pandas as pd

    from hub.describe import similarity_reading
    from hub.pairs import compare_paired

    hm = tiny_model("llama")
    words = ["cat", "dog", "sun", "tree", "house", "water", "bread", "stone"]
    ends = [".", "?"] * 4  # two final tokens: layer 0 holds two states per side
    a = Side([f"the {w} {e}" for w, e in zip(words, ends)])
    b = Side([f"le {w} {e}" for w, e in zip(words, ends)])
    metric = {"names": ["cos_centered", "retrieval_top1"], "k": 3, "csls": False, "csls_k": 3,
              "n_boot": 10, "ci": 0.95, "clamp": None}
    df = compare_paired(hm, PairedSet("toy", a, b, ids={"lang": "fr", "task": "sentences"}), metric,
                        layers=[0, hm.n_layers], batch_size=4)
    per_layer = df.groupby("layer")["n_distinct"].first()
    assert per_layer[0] == 2 and per_layer[hm.n_layers] == len(words)
    # a synthetic table: layer 0 holds 3 distinct states for 100 items and scores 1.0
    rows = [{"metric": "cka", "layer": k, "value": v, "baseline": 0.0, "ci_low": v - 0.1, "ci_high": v + 0.1,
             "n": 100, "n_distinct": d, "lang": "de", "task": "sentences"}
            for k, v, d in [(0, 1.0, 3), (5, 0.6, 100), (10, 0.4, 100)]]
    text = similarity_reading(pd.DataFrame(rows))
    assert "| cka | 1.000* | 0.600 (layer 5) |" in text
    assert "layer(s) 0 some pairs hold as few as 3 different states for 100 items" in text
    # without the column (older results) the reading is unchanged
    assert "0.600 (layer 5)" not in similarity_reading(pd.DataFrame(rows).drop(columns="n_distinct"))
