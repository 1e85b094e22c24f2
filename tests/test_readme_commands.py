"""Every command line README.md shows works as written.

The README is parsed, not copied: each line of a shell code block (and each inline code span)
that starts with ``semantic-hub``, ``semantic-hub-models``, ``semantic-hub-report`` or ``make``
is a documented command, so a command added or edited by anyone is checked here.

* ``semantic-hub ...``: composed exactly as the CLI composes it (Hydra's override grammar;
  every job of a ``-m`` sweep); placeholders such as ``<time>`` get a dummy value and
  ``experiment=NAME`` stands for every experiment. Commands that name a model run for real on
  the tiny random model of the same kind, with a few items (``QUICK``), when the experiment
  is quick on tiny models; the others (hours-long, placeholders in paths) are composed only.
* ``semantic-hub-models`` / ``semantic-hub-report``: their console-script functions (from
  pyproject.toml) parse the documented arguments (with ``--help``; ``list`` runs for real).
* ``make X``: ``make -n X`` (the target exists and its recipe expands).
"""
from __future__ import annotations

import importlib
import itertools
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
from helpers import compose_cfg
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException

from hub.cli import CONF_DIR, run_job

ROOT = Path(__file__).resolve().parents[1]
PROGRAMS = ("semantic-hub", "semantic-hub-models", "semantic-hub-report", "make")
# documented models -> the tiny random model of the same kind (conf/model/tiny_*.yaml)
TINY = {"gemma3_270m": "tiny_gemma3", "smollm2_135m": "tiny_llama", "hf": "tiny_llama",
        "llava_1_5_7b": "tiny_llava", "smolvlm_256m": "tiny_idefics3", "clip_vit_b32": "tiny_clip",
        "whisper_base": "tiny_whisper"}
# experiments that run in seconds on a tiny model with these extra overrides (fewer items)
QUICK = {
    "crosslingual": ["modality.max_items=8", "modality.languages=[de,zh]", "modality.units=[words]", "metric.n_boot=10"],
    "image_similarity": ["modality.max_items=6", "modality.languages=[en,de]", "metric.n_boot=10"],
    "clip_similarity": ["modality.max_items=6", "modality.languages=[en,de]", "metric.n_boot=10"],
    "whisper": ["modality.max_items=4", "modality.languages=[en,de]", "metric.n_boot=5",
                "experiment.conditions=[speech]"],
    "lens_smoke": [],
}
# example inputs the README's commands name (written into the working directory of the run)
EXAMPLE_FILES = {"my_words.csv": "concept,en,de,fr,ru,zh\ndog,dog,Hund,chien,собака,狗\ncat,cat,Katze,chat,кошка,猫\n"
                                 "house,house,Haus,maison,дом,房子\nwater,water,Wasser,eau,вода,水\n"
                                 "book,book,Buch,livre,книга,书\ntree,tree,Baum,arbre,дерево,树\n"}
# commands that need the files the README builds around them first
NEEDS_SETUP = {"modality=shout": "the example adapter of 'Adding a modality' (tests/test_adding_a_modality.py)"}


def readme_commands(text: str) -> list[str]:
    """Command lines of the README's shell code blocks and inline code spans, continuations joined."""
    cmds, lang, block = [], None, []
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            if lang is None:
                lang, block = fence.group(1) or "sh", []
            else:
                if lang in ("sh", "bash", "shell", "console"):
                    joined = "\n".join(block).replace("\\\n", " ")
                    cmds += [c.strip() for c in joined.splitlines()]
                lang = None
            continue
        if lang is not None:
            block.append(line)
        else:
            cmds += re.findall(r"`([^`]+)`", line)
    out, seen = [], set()
    for c in cmds:
        if not c.split() or c.split()[0] not in PROGRAMS:
            continue
        words = tuple(shlex.split(c, comments=True))
        if words and words not in seen:
            seen.add(words)
            out.append(" ".join(shlex.quote(w) for w in words))
    return out


COMMANDS = readme_commands((ROOT / "README.md").read_text(encoding="utf-8"))


def _placeholders(arg: str) -> str | None:
    """The argument with ``<...>`` filled in, or None for an optional ``[...]`` slot."""
    if re.fullmatch(r"\[[^=]*\]", arg):
        return None
    return re.sub(r"<[^>]*>", "x", arg)


def _jobs(args: list[str]) -> list[list[str]]:
    """The override lists of the jobs a command runs (a sweep expanded, at most 16)."""
    if "experiment=NAME" in args:
        names = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
        args = [a if a != "experiment=NAME" else "experiment=" + ",".join(names) for a in args]
    parsed = OverridesParser.create().parse_overrides(args)
    choices = []
    for o in parsed:
        key = o.get_key_element()
        vals = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        choices.append([f"{key}={v}" for v in vals])
    return [list(c) for c in itertools.islice(itertools.product(*choices), 16)]


def _tiny(job: list[str]) -> list[str] | None:
    """A quick real run of ``job`` on a tiny model, or None if it has no quick equivalent."""
    cfg = compose_cfg(job)
    if cfg.experiment.name not in QUICK or cfg.model.name not in TINY:
        return None
    kept = [a for a in job if not a.startswith(("model=", "model.path=", "model.pretrained=", "device="))]
    return kept + [f"model={TINY[cfg.model.name]}", "cache.enabled=false", "progress=false",
                   *QUICK[cfg.experiment.name]]


def _entry_point(prog: str):
    """The function pyproject.toml's [project.scripts] names for a console script."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = scripts[prog].split(":")
    return getattr(importlib.import_module(module), func)


def _missing_paths(job: list[str]) -> list[str]:
    """Files and absolute paths a job's overrides name that do not exist here."""
    out = []
    for arg in job:
        value = arg.split("=", 1)[-1]
        for tok in re.split(r"[\s{},\[\]:]+", value):
            if (tok.startswith("/") or re.search(r"\.(csv|jsonl|tsv|txt|safetensors|bin)$", tok)) and not Path(tok).exists():
                out.append(tok)
    return out


def test_the_readme_has_commands():
    progs = {shlex.split(c, comments=True)[0] for c in COMMANDS}
    assert {"semantic-hub", "make"} <= progs and len(COMMANDS) >= 10, COMMANDS


@pytest.mark.parametrize("cmd", COMMANDS)
def test_readme_command(cmd, tmp_path, monkeypatch):
    words = shlex.split(cmd, comments=True)
    prog, args = words[0], [a for a in map(_placeholders, words[1:]) if a is not None]
    monkeypatch.chdir(tmp_path)  # nothing a command writes lands in the checkout
    for name, text in EXAMPLE_FILES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    if prog == "make":
        r = subprocess.run(["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return
    if prog != "semantic-hub":  # semantic-hub-models, semantic-hub-report: their own parsers
        main = _entry_point(prog)
        if args[:1] == ["list"]:
            assert main(["list"]) == 0
            return
        with pytest.raises(SystemExit) as e:
            main([*args, "--help"])  # parses the documented subcommand and options; runs nothing
        assert e.value.code == 0
        return
    hydra_flags = {"-m", "--multirun", "--cfg", "job", "hydra", "all"}
    overrides = [a for a in args if a not in hydra_flags]
    if any(re.match(r"^[a-z]=", a) for a in overrides):
        pytest.skip(f"syntax illustration, not a runnable command: {cmd}")
    for needle, why in NEEDS_SETUP.items():
        if needle in overrides:
            pytest.skip(f"needs {why}")
    jobs = _jobs(overrides)
    for job in jobs:
        try:
            compose_cfg(job)  # what `semantic-hub <job> --cfg job` does: fails on a bad override
        except MissingConfigException as e:  # a launcher whose optional plugin is not installed here
            if not any(a.startswith("hydra/launcher=") for a in job) or "hydra/launcher" not in str(e):
                raise
            pytest.skip(f"launcher plugin not installed: {e}")
    if "-m" in args or "--cfg" in args or re.search(r"<[^>]*>|NAME", cmd):
        return  # a sweep (its jobs composed above) or a placeholder: composed only
    tiny = _tiny(jobs[0])
    if tiny is not None and not _missing_paths(tiny):  # paths of the user's own (/data/...): composed only
        report = run_job(compose_cfg(tiny), tmp_path / "out")
        assert report.is_file() and (tmp_path / "out" / "results.csv").stat().st_size > 0
