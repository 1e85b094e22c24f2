"""The regions experiments (regions_ablation, regions_dimensions, regions_freeze): their corpus
loading (files, a user's corpus, a Hugging Face dataset, the held-out split) and smoke runs on a tiny model."""
from __future__ import annotations

import pandas as pd
import pytest


def test_empty_corpus_file(tmp_path):
    from omegaconf import OmegaConf

    from hub.steps.regions import load_texts
    (tmp_path / "en.txt").write_text("Some text.\nMore text.\n", encoding="utf-8")
    (tmp_path / "fr.txt").write_text("   \n", encoding="utf-8")
    cfg = OmegaConf.create({"data": {"corpus": str(tmp_path)},
                            "experiment": {"languages": ["en", "fr"], "corpus": None, "hf_dataset": None}})
    with pytest.raises(ValueError, match="language 'fr'.*empty"):
        load_texts(cfg)
    cfg.experiment.languages = ["en", "xx"]
    with pytest.raises(FileNotFoundError, match="language 'xx'"):
        load_texts(cfg)
    (tmp_path / "mine.txt").write_text("Mon texte.\n", encoding="utf-8")
    cfg.experiment.languages = ["en", "fr"]
    cfg.experiment.corpus = {"fr": str(tmp_path / "mine.txt")}
    assert load_texts(cfg)["fr"].startswith("Mon texte")


def test_hf_dataset_source(tmp_path):
    datasets = pytest.importorskip("datasets")
    from omegaconf import OmegaConf

    from hub.steps.regions import load_texts
    ds = datasets.Dataset.from_dict({"text": ["Hello there.", "Bonjour.", "General Kenobi."],
                                     "language": ["en", "fr", "en"]})
    ds.save_to_disk(str(tmp_path / "ds"))
    spec = {"path": str(tmp_path / "ds"), "text_column": "text", "lang_column": "language"}
    cfg = OmegaConf.create({"data": {"corpus": str(tmp_path)},
                            "experiment": {"languages": ["en", "fr"], "corpus": None, "hf_dataset": spec}})
    assert load_texts(cfg) == {"en": "Hello there.\nGeneral Kenobi.", "fr": "Bonjour."}
    cfg.experiment.languages = ["en", "de"]
    with pytest.raises(ValueError, match="language 'de': empty text"):
        load_texts(cfg)
    cfg.experiment.hf_dataset.lang_column = "lang"
    with pytest.raises(ValueError, match="no column 'lang'"):
        load_texts(cfg)


def test_split_is_deterministic_and_disjoint():
    from hub.steps.regions import split_text
    text = "\n".join(f"Paragraph number {i} with some words in it." for i in range(20))
    a, b = split_text(text, 0.4)
    assert (a, b) == split_text(text, 0.4)
    assert a + "\n" + b == text and 0.5 < len(a) / len(text) < 0.7


# ----------------------------------------------------------------------------- smoke runs
CORPUS = {
    "en": "The cat sat on the mat and looked at the garden.\n" * 12,
    "fr": "Le chat est sur le tapis et regarde le jardin.\n" * 12,
    "de": "Die Katze sitzt auf der Matte und schaut in den Garten.\n" * 12,
}
SMALL = ["experiment.languages=[en,fr,de]", "experiment.window=24", "experiment.batch_size=2",
         "experiment.importance.tokens=48", "experiment.eval_tokens=48", "progress=false"]
EXTRA = {
    "regions_ablation": [],
    "regions_dimensions": ["experiment.activation_tokens=24", "experiment.n_outliers=2", "experiment.n_controls=1"],
    "regions_freeze": ["experiment.train_lang=fr", "experiment.steps=2", "experiment.train_tokens=48"],
}


@pytest.mark.parametrize("name", sorted(EXTRA))
def test_experiment_smoke(name, tmp_path):
    from hydra import compose, initialize_config_dir

    from hub.cli import CONF_DIR, run_job

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for lang, text in CORPUS.items():
        (corpus / f"{lang}.txt").write_text(text, encoding="utf-8")
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"experiment={name}", "model=tiny_llama",
                                                       f"data.corpus={corpus}", *SMALL, *EXTRA[name]])
    out = tmp_path / "out"
    report = run_job(cfg, out)
    df = pd.read_csv(out / "results.csv")
    ppl = df[df.metric == "perplexity"]
    assert len(ppl) and ppl["value"].notna().all() and set(ppl["lang"]) == {"en", "fr", "de"}
    assert "region" in df.columns or "frozen" in df.columns
    assert report.exists() and list(out.glob("*.png"))
    if name == "regions_ablation":
        assert set(ppl["region"]) == {"none", "core", "bottom", "random", "mono:en", "mono:fr", "mono:de"}
        assert (out / "regions.safetensors").exists()
        # reuse the saved regions: no re-scoring, same table
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg2 = compose(config_name="config", overrides=[f"experiment={name}", "model=tiny_llama",
                                                            f"data.corpus={corpus}", *SMALL,
                                                            f"experiment.regions_file={out / 'regions.safetensors'}"])
        run_job(cfg2, tmp_path / "out2")
        df2 = pd.read_csv(tmp_path / "out2" / "results.csv")
        assert df2[df2.metric == "perplexity"]["value"].tolist() == pytest.approx(ppl["value"].tolist(), rel=1e-6)
