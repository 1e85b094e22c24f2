"""The store's expected failures: each message is meant for the user (one line)."""

from __future__ import annotations

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
