"""A researcher's own data: a run's languages are the table's, the dominant one required,
``modality.languages`` narrows them, and the shipped data is never mixed in unseen."""
from __future__ import annotations

import pandas as pd
import pytest
from helpers import compose_cfg, run_cfg

from experiments.wic import sources
from hub.errors import UserError
from modalities.text import DATA, TextAdapter

WORDS = ("concept,en,de,fr,ru,zh\ndog,dog,Hund,chien,собака,狗\ncat,cat,Katze,chat,кошка,猫\n"
         "house,house,Haus,maison,дом,房子\nwater,water,Wasser,eau,вода,水\nbook,book,Buch,livre,книга,书\n"
         "tree,tree,Baum,arbre,дерево,树\n")


@pytest.fixture
def my_words(tmp_path):
    p = tmp_path / "my_words.csv"
    p.write_text(WORDS, encoding="utf-8")
    return p


def test_languages_default_to_the_tables_and_shipped_sentences_are_left_out(my_words):
    ad = TextAdapter(words=my_words)  # sentences default to the shipped table
    assert ad.languages == ["en", "de", "fr", "ru", "zh"]
    sets = list(ad.pairs())
    assert [s.name for s in sets] == ["words:de-en", "words:fr-en", "words:ru-en", "words:zh-en"]
    assert all(len(s.a) == 6 for s in sets)
    assert "sentences" in ad.skipped and "words from " + str(my_words) in ad.describe()
    assert "sentences not compared" in ad.describe() and "sentences.csv" in ad.describe()


def test_languages_narrow_and_the_dominant_is_required(my_words, tmp_path):
    ad = TextAdapter(words=my_words, languages=["de", "fr"])
    assert ad.languages == ["en", "de", "fr"]
    assert [s.name for s in ad.pairs()] == ["words:de-en", "words:fr-en"]
    with pytest.raises(UserError, match=r"my_words.csv: missing column 'es'"):
        list(TextAdapter(words=my_words, languages=["de", "es"]).pairs())
    no_en = tmp_path / "no_en.csv"
    no_en.write_text("concept,de,fr\na,Hund,chien\n")
    with pytest.raises(UserError, match=r"no column for the dominant language 'en'.*\['de', 'fr'\]"):
        TextAdapter(words=no_en)


def test_cloze_with_own_words_needs_own_cloze(my_words, tmp_path):
    ad = TextAdapter(words=my_words)
    with pytest.raises(UserError, match="data.cloze=PATH"):
        ad.lens_task("cloze", "de", "de", None)
    cloze = tmp_path / "cloze.csv"
    cloze.write_text("concept,lang,sentence\n" + "".join(f"{c},de,Das ___ ist hier.\n" for c in
                                                        ("dog", "cat", "house", "water", "book", "tree")))
    assert TextAdapter(words=my_words, cloze=cloze)._cloze_sentences("de")["dog"] == "Das ___ ist hier."


def test_shipped_data_alone_is_unchanged():
    ad = TextAdapter()
    assert ad.skipped == {} and len(ad.languages) == 12
    assert {s.name.split(":")[0] for s in ad.pairs()} == {"words", "sentences"}
    own_sentences = TextAdapter(sentences=DATA / "sentences.csv", words=DATA / "words.csv", units=["words"])
    assert own_sentences.skipped == {}


def test_crosslingual_run_on_own_words_compares_only_them(my_words, tmp_path):
    report = run_cfg(["experiment=crosslingual", "model=tiny_llama", f"data.words={my_words}",
                      "cache.enabled=false", "metric.n_boot=20"], tmp_path)
    df = pd.read_csv(tmp_path / "results.csv")
    assert set(df["task"]) == {"words"} and set(df["lang"]) == {"de", "fr", "ru", "zh"}
    assert set(df["n"]) == {6}
    assert "sentences not compared" in report.read_text()


def test_wic_sets_replace_the_shipped_ones(tmp_path):
    shipped = compose_cfg(["experiment=wic"]).wic
    sets, graded, left = sources(shipped)
    assert set(sets) == {"en", "de"} and len(graded) == 1 and left == []
    own = compose_cfg(["experiment=wic", f"wic.sets={{wic: {tmp_path}}}"]).wic  # the README's form
    sets, graded, left = sources(own)
    assert sets == {"wic": str(tmp_path)} and graded == []
    assert any("graded_en.tsv" in x for x in left)
    via_data = compose_cfg(["experiment=wic", f"data.wic={tmp_path}"]).wic
    sets, _, left = sources(via_data)
    assert sets == {"en": str(tmp_path)} and any(x.startswith("set de") for x in left)
