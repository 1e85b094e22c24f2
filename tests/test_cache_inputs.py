"""Activation cache with multimodal inputs and code versions (hub/cache.py).

The same prompt with another image, audio clip or encoder output must never read the first
one's states (the ``extra`` model inputs are part of the key); a multimodal capture must be able
to hit at all (transformers leaves output-recording hooks on llava's vision tower after the
first forward, which once made every later capture bypass the cache); and an entry written by
other capture code is a miss.
"""
from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from hub import cache as cache_mod
from hub.cache import ActivationCache, code_version
from hub.models.tiny import tiny_model, tiny_multimodal, tiny_whisper


def _count_forwards(hm) -> dict:
    """Wrap ``hm.forward_batch`` (per instance) to count model runs."""
    calls = {"n": 0}
    orig = hm.forward_batch

    def counting(batch, **kw):
        calls["n"] += 1
        return orig(batch, **kw)

    hm.forward_batch = counting
    return calls


@pytest.fixture
def cached(tmp_path):
    """Attach a fresh cache to a (process-wide, lru-cached) tiny model, restoring it afterwards."""
    made = []

    def attach(hm):
        hm.cache = ActivationCache(tmp_path / "acts")
        made.append(hm)
        return hm, _count_forwards(hm)

    yield attach
    for hm in made:
        hm.cache = None
        del hm.forward_batch  # back to the class's method


def _image(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8))


def test_llava_capture_hits_on_the_second_run(cached):
    hm, calls = cached(tiny_multimodal("llava"))
    enc = hm.encode_image(_image(0), "Describe {image} briefly")
    a = hm.capture([enc.ids], layers="all", positions="last", extra=[enc.extra])
    n = calls["n"]
    assert n > 0 and hm.cache.stats.writes == 1
    b = hm.capture([enc.ids], layers="all", positions="last", extra=[enc.extra])
    assert hm.cache.stats.bypassed == 0, "transformers' recording hooks must not count as interventions"
    assert hm.cache.stats.hits == 1 and calls["n"] == n and torch.equal(a, b)
    # an intervention still bypasses the cache, on this model as on any other
    with hm.hooks({1: lambda h: h + 1.0}):
        c = hm.capture([enc.ids], layers="all", positions="last", extra=[enc.extra])
    assert hm.cache.stats.bypassed == 1 and calls["n"] > n and not torch.equal(a, c)


def test_a_second_image_with_the_same_prompt_gets_its_own_states(cached):
    hm, calls = cached(tiny_multimodal("llava"))
    e1, e2 = (hm.encode_image(_image(s), "Describe {image} briefly") for s in (1, 2))
    assert e1.ids == e2.ids  # the same tokens: only the pixels tell the two apart
    a = hm.capture([e1.ids], layers="all", positions="all", extra=[e1.extra])
    n = calls["n"]
    b = hm.capture([e2.ids], layers="all", positions="all", extra=[e2.extra])
    assert calls["n"] > n and hm.cache.stats.hits == 0, "the second image read the first one's entry"
    hm.cache = None
    ref = hm.capture([e2.ids], layers="all", positions="all", extra=[e2.extra])
    assert torch.equal(b[0], ref[0]) and not torch.allclose(a[0], b[0])


def test_a_second_audio_clip_with_the_same_prompt_gets_its_own_states(cached):
    hm, calls = cached(tiny_multimodal("qwen2_audio"))
    t = np.arange(16000)
    e1, e2 = (hm.encode_audio((0.1 * np.sin(t / f)).astype(np.float32)) for f in (5, 9))
    assert e1.ids == e2.ids
    a = hm.capture([e1.ids], layers="all", positions="last", extra=[e1.extra])
    n = calls["n"]
    b = hm.capture([e2.ids], layers="all", positions="last", extra=[e2.extra])
    assert calls["n"] > n and hm.cache.stats.hits == 0
    assert not torch.allclose(a, b)
    assert torch.equal(hm.capture([e1.ids], layers="all", positions="last", extra=[e1.extra]), a)
    assert hm.cache.stats.hits == 1


def test_whisper_encoder_states_are_part_of_the_key(cached):
    wh, calls = cached(tiny_whisper())
    ids = [wh.prefix("en") + wh.text_ids("the cat")]
    torch.manual_seed(0)
    h1, h2 = torch.randn(2, 1, 1500, 32).unbind(0)  # two clips' encoder outputs [1, frames, d]
    a = wh.capture(ids, layers="all", positions="all", extra=[{"encoder_hidden_states": h1}])
    n = calls["n"]
    b = wh.capture(ids, layers="all", positions="all", extra=[{"encoder_hidden_states": h2}])
    assert calls["n"] > n and wh.cache.stats.hits == 0, "the second clip read the first one's entry"
    assert not torch.allclose(a[0], b[0])
    wh.capture(ids, layers="all", positions="all", extra=[{"encoder_hidden_states": h1}])
    assert wh.cache.stats.hits == 1


# ------------------------------------------------------------------------- code version
TEXTS = ["The cat sat on the mat.", "Le chat"]


def test_an_entry_of_other_capture_code_is_a_miss(tmp_path, monkeypatch):
    hm = tiny_model("llama")
    hm.cache = ActivationCache(tmp_path / "acts")
    calls = _count_forwards(hm)
    a = hm.capture(TEXTS, layers="all")
    (entry,) = hm.cache.entries()
    from safetensors import safe_open

    with safe_open(str(entry), framework="pt") as f:
        assert f.metadata()["code"] == code_version(hm)  # the entry says which code wrote it
    n = calls["n"]
    monkeypatch.setattr(cache_mod, "code_version", lambda hm: "another-version")
    b = hm.capture(TEXTS, layers="all")
    assert calls["n"] > n and hm.cache.stats.hits == 0 and torch.equal(a, b)
    monkeypatch.undo()
    hm.capture(TEXTS, layers="all")
    assert hm.cache.stats.hits == 1 and calls["n"] == n + 1  # the original version's entry still hits


def _load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_code_version_follows_the_capture_source(tmp_path, monkeypatch):
    """A subclass's module (its capture code) enters the version: editing it changes the version;
    the version also differs from the base class's."""
    src = ("from hub.models import HubModel\n\n\nclass MyHub(HubModel):\n"
           "    def forward_batch(self, batch, **kw):\n        return super().forward_batch(batch, **kw)\n")
    hub_cls = type(tiny_model("llama"))
    real = cache_mod._capture_modules.__wrapped__
    monkeypatch.setattr(cache_mod, "_capture_modules", lambda cls: real(hub_cls) + (
        (cls.__module__,) if cls.__module__ == "my_hub" else ()))
    versions = []
    for i, body in enumerate([src, src + "\n# scaled by 2\n", src]):
        (tmp_path / f"v{i}").mkdir()
        (tmp_path / f"v{i}" / "my_hub.py").write_text(body)
        mod = _load(tmp_path / f"v{i}" / "my_hub.py", "my_hub")
        monkeypatch.setitem(sys.modules, "my_hub", mod)
        versions.append(cache_mod._code_version.__wrapped__(mod.MyHub))
    base = cache_mod._code_version.__wrapped__(hub_cls)
    assert versions[0] != versions[1] and versions[0] == versions[2] and base not in versions
    # the real module set of a HubModel covers its capture code and the project code it imports
    model_mod = sys.modules[hub_cls.__module__]
    assert {hub_cls.__module__, model_mod.make_reader.__module__} <= set(real(hub_cls))


# ------------------------------------------------------------------- the suite's own cache
def test_each_test_has_its_own_activation_cache_and_the_real_store(_own_activation_cache, monkeypatch):
    """conftest's autouse fixture: the default cache dir is this test's temporary dir, never
    the user's; the model store is still the user's (where the offline models are)."""
    from hub.cache import ENV_DIR, default_dir
    from hub.store import store_root

    assert default_dir() == _own_activation_cache and not any(_own_activation_cache.iterdir())
    real_store = store_root()
    monkeypatch.delenv(ENV_DIR)
    assert store_root() == real_store  # the variable moves the cache only
    assert default_dir() == real_store.parent / "activations"  # where it would have gone
