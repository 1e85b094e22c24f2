"""Shared fixtures: tiny random models (unit tests) and the real offline models (integration)."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _store_model(name: str):
    from hub.model import load_model
    from hub.store import default_store

    if not default_store().is_installed(name):
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not in the model store; `make test` fetches it first")
        pytest.skip(f"{name} not installed: run `semantic-hub-models fetch {name}`")
    return load_model(name)


@pytest.fixture(scope="session")
def gemma():
    """The real Gemma-3-270m from the offline store (loaded once per session)."""
    return _store_model("gemma3_270m")


@pytest.fixture(scope="session")
def smollm():
    return _store_model("smollm2_135m")
