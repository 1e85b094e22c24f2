"""Bad input through the CLI: one line ``semantic-hub: error: ...`` on stderr, a non-zero exit,
no results left behind; the traceback only on request; a bug keeps its traceback.

Each row of ``CASES`` is one bad input (issue 12's table, and the earlier bad-input cases of the
unit tests, now seen from the command line): the overrides, the files it needs, and words the
line must contain. The CLI's ``main()`` runs in-process (``sys.argv`` set; stderr read at the
file-descriptor level); two rows also run as a real process.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hub import cli

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model=tiny_llama", "progress=false", "cache.enabled=false"]
WORDS = "concept,en,de,fr\ndog,dog,Hund,chien\ncat,cat,Katze,chat\nhouse,house,Haus,maison\nsea,sea,Meer,mer\n"


def _files(tmp: Path) -> None:
    """Every bad file the table names, written into the run's directory."""
    (tmp / "not_regions.safetensors").write_text("this is not a safetensors file\n" * 20)
    (tmp / "dup_words.csv").write_text("concept,en,de\n" + "".join(f"c{i},dog,Hund\n" for i in range(5)))
    (tmp / "words.csv").write_text(WORDS)
    (tmp / "bad_lang.csv").write_text(WORDS.replace("concept,en,de,fr", "concept,en,de,xx"))
    (tmp / "no_en.csv").write_text("concept,de,fr\na,Hund,chien\n")
    (tmp / "broken.jsonl").write_text('{"en": "dog", "de": "Hund"}\n{"en": "cat", \n')
    imgs = tmp / "imgs"
    imgs.mkdir()
    (imgs / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG header, then nothing
    (imgs / "b.png").write_text("not an image at all")
    (imgs / "captions.csv").write_text("file,en,de\na.png,a red square,ein rotes Quadrat\n"
                                       "b.png,a blue circle,ein blauer Kreis\n")
    speech = tmp / "speech"
    speech.mkdir()
    (speech / "a.wav").write_bytes(b"RIFF\x00\x00")
    (speech / "b.wav").write_text("not audio")
    (speech / "transcripts.csv").write_text("file,lang,text\na.wav,en,hello\nb.wav,de,hallo\n")
    (tmp / "code.jsonl").write_text('{"id": "f", "code": "def f(): pass", "en": "does nothing", "fr": "rien", '
                                    '"zh": "无"}\nnot json\n')


CASES = [  # (id, argv after the shell's quoting, words the error line must contain)
    # issue 12's table
    ("dtype", TINY + ["model.dtype=float13"], ["model.dtype='float13'", "float32", "bfloat16"]),
    ("regions_file", TINY + ["experiment=regions_dimensions", "experiment.regions_file=not_regions.safetensors",
                             "experiment.languages=[en,de]"], ["not_regions.safetensors", "not a safetensors file"]),
    ("batch_size=0", TINY + ["batch_size=0"], ["batch_size=0", "positive integer"]),
    ("batch_size=-3", TINY + ["batch_size=-3"], ["batch_size=-3", "positive integer"]),
    ("batch_size=two", TINY + ["batch_size=two"], ["batch_size='two'", "positive integer"]),
    ("cuda", TINY + ["device=cuda"], ["device='cuda'", "CUDA is not available"]),
    ("cuda:3", TINY + ["device=cuda:3"], ["device='cuda:3'"]),
    ("mps", TINY + ["device=mps"], ["device='mps'", "MPS is not available"]),
    ("tpu", TINY + ["device=tpu"], ["device='tpu'", "expected cpu, cuda, cuda:N or mps"]),
    ("duplicate rows", TINY + ["experiment=crosslingual", "data.words=dup_words.csv"],
     ["dup_words.csv", "4 of 5 rows are duplicates", "row 3 = row 2", "row 6 = row 2"]),
    ("unreadable images", ["model=tiny_llava", "progress=false", "cache.enabled=false", "experiment=image_similarity",
                           "modality.source=imgs"], ["2 of 2 images could not be read", "a.png", "b.png"]),
    ("unreadable audio", ["model=tiny_whisper", "progress=false", "cache.enabled=false", "experiment=whisper_encoder",
                          "modality.folder=speech", "modality.languages=[en,de]"],
     ["2 of 2 audio files could not be read", "a.wav", "b.wav"]),
    # bad overrides (Hydra's composition)
    ("unknown key", TINY + ["foo=1"], ["foo", "not in struct"]),
    ("unknown experiment", TINY + ["experiment=nope"], ["experiment/nope", "crosslingual"]),
    ("unknown model config", ["model=nope"], ["model/nope", "tiny_llama"]),
    ("override syntax", TINY + ["experiment.layers=[1,2"], ["experiment.layers=[1,2"]),
    # earlier bad inputs of the unit tests, from the command line
    ("missing words file", TINY + ["experiment=crosslingual", "data.words=nope.csv"], ["nope.csv", "no such data file"]),
    ("not a language code", TINY + ["experiment=crosslingual", "data.words=bad_lang.csv"],
     ["bad_lang.csv", "'xx' is not an ISO 639-1 language code"]),
    ("missing language column", TINY + ["experiment=crosslingual", "data.words=words.csv",
                                        "modality.languages=[de,es]"], ["words.csv", "missing column 'es'"]),
    ("no dominant language", TINY + ["experiment=crosslingual", "data.words=no_en.csv"],
     ["no_en.csv", "dominant language 'en'"]),
    ("unparsable table", TINY + ["experiment=crosslingual", "data.words=broken.jsonl"], ["broken.jsonl", "JSONL"]),
    ("empty prompt", TINY + ["experiment=lens_smoke", "experiment.prompt=' '"], ["empty prompt"]),
    ("layer out of range", TINY + ["experiment=crosslingual", "experiment.layers=[99]"], ["layer 99", "valid layers"]),
    ("dominant as target", TINY + ["experiment=latent_language", "tgt=en"], ["dominant language"]),
    ("unknown task", TINY + ["experiment=latent_language", "task=poem"], ["task='poem'"]),
    ("missing WiC dir", TINY + ["experiment=wic", "wic.sets={wic: nowhere}"], ["nowhere", "no such WiC directory"]),
    ("bad code file", TINY + ["experiment=code", "data.code=code.jsonl"], ["code.jsonl:2", "not valid JSON"]),
    ("region fraction", TINY + ["experiment=regions_ablation", "experiment.k=2", "experiment.languages=[en,de]"],
     ["k must be a fraction"]),
    ("whisper on a text model", TINY + ["experiment=whisper_encoder"], ["Whisper model"]),
    ("unknown running-text language", TINY + ["experiment=running_text", "experiment.languages=[xx]"],
     ["no running text for 'xx'"]),
    ("number words language", TINY + ["experiment=arithmetic", "modality.languages=[en,xx]"],
     ["language 'xx'", "number words exist for"]),
    ("no captions file", ["model=tiny_llava", "progress=false", "cache.enabled=false", "experiment=image_similarity",
                          "modality.source=nowhere"], ["nowhere/captions.csv", "no captions file"]),
    ("images on a text model", TINY + ["experiment=image_similarity", "model=tiny_llama"],
     ["vision-language model", "model.kind: vlm"]),
    ("lexicon too small", TINY + ["experiment=steer_sentiment", "experiment.n_build=1000"], ["n_build=1000"]),
    ("unknown construction", TINY + ["experiment=semantics", "modality.constructions=[poem]"], ["construction 'poem'"]),
    ("unknown metric config", TINY + ["metric=nope"], ["metric/nope", "cosine"]),
    ("missing model", ["model=hf", "model.path=/nonexistent/model", "progress=false", "cache.enabled=false"],
     ["/nonexistent/model", "not a store name"]),
]


def _skip_if_device_exists(case_id: str) -> None:
    if case_id in ("cuda", "cuda:3") and torch.cuda.is_available() and (case_id == "cuda" or torch.cuda.device_count() > 3):
        pytest.skip("this machine has the device")
    if case_id == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")


def _results(out: Path) -> list[Path]:
    """What counts as results in a run directory (Hydra's .hydra/ and log are not results)."""
    return [p for p in out.rglob("*") if p.is_file() and p.suffix in (".csv", ".md", ".png", ".safetensors")]


def _main(argv: list[str], monkeypatch) -> int:
    monkeypatch.setattr(sys, "argv", ["semantic-hub", *argv])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    with pytest.raises(SystemExit) as e:
        cli.main()
    return e.value.code


@pytest.mark.parametrize("case_id, overrides, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line(case_id, overrides, words, tmp_path, monkeypatch, capfd):
    _skip_if_device_exists(case_id)
    _files(tmp_path)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    args = overrides + [f"hydra.run.dir={out}"]  # argv as the shell passes it
    code = _main(args, monkeypatch)
    err = capfd.readouterr().err
    lines = err.splitlines()
    assert code not in (0, None), err
    assert len(lines) == 1 and lines[0].startswith("semantic-hub: error: "), err
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert _results(out) == [] if out.exists() else True


def test_verbose_gives_the_traceback(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["semantic-hub", *TINY, "batch_size=0", "verbose=true",
                                      f"hydra.run.dir={tmp_path / 'out'}"])
    with pytest.raises(SystemExit) as e:
        cli.main()  # Hydra prints its (short) traceback and exits 1
    assert e.value.code == 1
    err = capfd.readouterr().err
    assert "Traceback" in err and "batch_size=0" in err


def test_hydra_full_error_raises_the_user_error(tmp_path, monkeypatch):
    from hub.errors import UserError

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(sys, "argv", ["semantic-hub", *TINY, "batch_size=0", f"hydra.run.dir={tmp_path / 'out'}"])
    with pytest.raises(UserError, match="batch_size=0"):
        cli.main()  # the exception itself, with its whole traceback


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def broken(cfg, out):
        raise ZeroDivisionError("a bug, not the user's input")

    monkeypatch.setattr(cli, "run_job", broken)
    monkeypatch.setattr(sys, "argv", ["semantic-hub", *TINY, f"hydra.run.dir={tmp_path / 'out'}"])
    with pytest.raises(ZeroDivisionError):
        cli.main()
    assert os.environ.get("HYDRA_FULL_ERROR") is None  # main() restores the environment


@pytest.mark.parametrize("argv", [["batch_size=0"], ["wic.sets.en=/x", "experiment=wic"]])
def test_a_real_process_prints_one_line(argv, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("HYDRA_FULL_ERROR", None)
    r = subprocess.run([sys.executable, "-m", "hub.cli", *TINY, *argv, f"hydra.run.dir={tmp_path / 'out'}"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("semantic-hub: error: "), r.stderr
    assert not (tmp_path / "out" / "results.csv").exists() and not (tmp_path / "out" / "report.md").exists()


def test_device_checks_on_a_machine_with_two_gpus(monkeypatch):
    """cuda:N beyond the machine's devices is named with the valid range (CUDA faked as present)."""
    from hub.errors import UserError, check_device, check_run_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda") == "cuda" and check_device("cuda:1") == "cuda:1"
    with pytest.raises(UserError, match=r"device='cuda:3': this machine has 2 CUDA device\(s\); expected cuda:0..cuda:1"):
        check_device("cuda:3")
    with pytest.raises(UserError, match="experiment.batch_size=0"):
        check_run_config({"batch_size": 4, "device": "cpu", "experiment": {"batch_size": 0}})
