"""Text adapter: table validation, prompts, token sets and drops; latent readout on tiny models."""
import pytest
from helpers import assert_only_prefixes

from hub.lens.readout import lens_readout
from hub.lens.tokensets import Scheme, bytes_to_unicode, scheme_of, token_set
from hub.models.tiny import tiny_model, tiny_tokenizer
from hub.stats import mean_ci
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
    assert lt.set_names == ["zh", "en"] and lt.ids == {"task": "translation", "src": "fr", "tgt": "zh"}
    for ts, ls in lt.token_sets:
        assert ts and ls and not (ts & ls)
    rep = ad.lens_task("repetition", "fr", "zh", tok)
    assert rep.ids["src"] == "zh" and '中文: "' in rep.prompts[0].split("\n")[-1]
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
    assert "taxi" not in lt.items and "piano" not in lt.items and len(lt.prompts) == 7
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
    # and nothing else: every token is a prefix of the word (with or without Ġ), so the set is small
    for word in ("chat", "cat", "flower", "狗", "Paris"):
        assert_only_prefixes(tok, word, token_set(tok, word))
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
    """lens_readout against a reference computed from Hugging Face's own hidden states:
    final norm + unembedding, a full softmax, summed over each set, mean and 95% interval."""
    import numpy as np
    import torch

    hm = tiny_model("llama")
    prompts = ['Français: "chien" - 中文: "', 'Français: "chat" - 中文: "', 'Le chat', 'The cat sat']
    sets = [[frozenset({5, 6, 300}), frozenset({7})], [frozenset({8}), frozenset({7, 9})],
            [frozenset({5}), frozenset({399})], [frozenset({100, 101}), frozenset({4})]]
    df, raw = lens_readout(hm, prompts, sets, ["zh", "en"])
    L = hm.n_layers
    ref_p = np.zeros((4, L + 1, 2))
    ref_ent = np.zeros((4, L + 1))
    for i, text in enumerate(prompts):
        ids = torch.tensor([hm.tokenize([text])[0]])
        with torch.no_grad():
            hs = hm.model(input_ids=ids, output_hidden_states=True).hidden_states  # L+1 x [1, seq, d]
            # HF's last entry is already normed; the others are raw block outputs
            h = torch.stack([hm.final_norm(x[0, -1]) for x in hs[:L]] + [hs[L][0, -1]])  # [L+1, d]
            p = torch.softmax(hm.unembed(h).double(), -1)  # [L+1, vocab]
        for s_, ids_ in enumerate(sets[i]):
            ref_p[i, :, s_] = p[:, sorted(ids_)].sum(-1).numpy()
        ref_ent[i] = (-(p * p.log()).sum(-1) / np.log(2)).numpy()
    np.testing.assert_allclose(raw["set_prob"], ref_p, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(raw["entropy"], ref_ent, rtol=1e-4, atol=1e-5)
    probs = df[df.metric == "lang_prob"]
    assert set(probs["lang"]) == {"zh", "en"} and len(probs) == 2 * (L + 1)
    for s_, lang in enumerate(["zh", "en"]):
        rows = probs[probs.lang == lang].sort_values("layer")
        assert rows["layer"].tolist() == list(range(L + 1)) and (rows["n"] == 4).all()
        m, sd = ref_p[:, :, s_].mean(0), ref_p[:, :, s_].std(0, ddof=1)
        np.testing.assert_allclose(rows["value"], m, rtol=1e-4, atol=1e-7)
        half = 1.96 * sd / 2.0  # normal approximation, n = 4; a probability's interval stays in [0, 1]
        np.testing.assert_allclose(rows["ci_high"], np.clip(m + half, 0, 1), rtol=1e-3, atol=1e-7)
        np.testing.assert_allclose(rows["ci_low"], np.clip(m - half, 0, 1), rtol=1e-3, atol=1e-7)
    ent = df[df.metric == "entropy"].sort_values("layer")
    np.testing.assert_allclose(ent["value"], ref_ent.mean(0), rtol=1e-4)
    assert "token_energy" in set(df.metric) and df["value"].notna().all()


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
