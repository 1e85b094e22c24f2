"""Shared fixtures: tiny random models (unit tests) and the real offline models (integration)."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _store_model(name: str):
    from hub.models import load_model
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


@pytest.fixture(scope="session")
def qwen05():
    """The real Qwen2.5-Coder-0.5B-Instruct (in `make test`)."""
    return _store_model("qwen25_coder_05b")


@pytest.fixture(scope="session")
def qwen15():
    """The real Qwen2.5-Coder-1.5B-Instruct (tests marked `big`: `make test-all` only)."""
    return _store_model("qwen25_coder_15b")


@pytest.fixture(autouse=True)
def _own_activation_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty activation cache (never the user's), so a test passes or
    fails on what the code computes now, not on states an earlier run left behind. Only the
    cache moves: the offline model store (``$SEMANTIC_HUB_HOME`` / ``~/.cache/semantic-hub/
    models``) is still found. Subprocesses started with ``os.environ`` inherit the setting."""
    from hub.cache import ENV_DIR

    d = tmp_path_factory.mktemp("activations")
    monkeypatch.setenv(ENV_DIR, str(d))
    yield d


@pytest.fixture(autouse=True)
def _threads(request):
    """Tiny models run fastest on one thread; the real models use every core."""
    real = request.node.get_closest_marker("integration") is not None
    torch.set_num_threads((os.cpu_count() or 1) if real else 1)
    yield
