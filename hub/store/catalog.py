"""The model catalog (``hub/store/catalog.yaml``): which PyPI packages carry which model, and
how their files make up the weight file. Parsed and validated into :class:`CatalogEntry`."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StoreError

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")


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
