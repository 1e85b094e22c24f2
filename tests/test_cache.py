"""Activation cache (hub/cache.py): hits skip the model, keys change with whatever fixes the
states, in-place weight edits and hooks are noticed, corrupt entries are recomputed."""
from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest
import torch

from hub.cache import ActivationCache, from_config, model_identity
from hub.models.tiny import tiny_model

TEXTS = ["The cat sat on the mat.", "Le chat est sur le tapis.", "Der Hund schläft.", "猫在垫子上。", "5+3=8."]


@pytest.fixture
def hm(tmp_path):
    m = tiny_model("llama")
    m.cache = ActivationCache(tmp_path / "acts")
    calls = {"n": 0}
    orig = m.forward_batch

    def counting(batch, **kw):
        calls["n"] += 1
        return orig(batch, **kw)

    m.forward_batch = counting
    m.calls = calls
    return m


def test_hit_returns_identical_states_without_running_the_model(hm):
    a = hm.capture(TEXTS, layers="all", positions="last", batch_size=2)
    n = hm.calls["n"]
    assert n > 0 and hm.cache.stats.writes == 1
    b = hm.capture(TEXTS, layers="all", positions="last", batch_size=4)  # batch size is not part of the key
    assert hm.calls["n"] == n and hm.cache.stats.hits == 1
    assert torch.equal(a, b) and b.dtype == a.dtype
    hm.cache = None
    assert torch.equal(hm.capture(TEXTS, layers="all", positions="last", batch_size=2), a)


def test_all_positions_round_trip(hm):
    a = hm.capture(TEXTS, layers=[0, 2], positions="all")
    b = hm.capture(TEXTS, layers=[0, 2], positions="all")
    assert hm.cache.stats.hits == 1
    assert len(a) == len(b) == len(TEXTS)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("change", [
    dict(layers=[0, 1]), dict(positions="mean"), dict(dtype=torch.float64), dict(inputs=TEXTS[:4]),
    dict(inputs=TEXTS[::-1]), dict(positions="mean", spans=[(1, 3)] * len(TEXTS)),
])
def test_key_changes_with_what_fixes_the_states(hm, change):
    base = dict(inputs=TEXTS, layers="all", positions="last")
    hm.capture(**base)
    n = hm.calls["n"]
    hm.capture(**(base | change))
    assert hm.calls["n"] > n, f"{change} must not hit the entry of {base}"
    assert hm.cache.stats.hits == 0


def test_in_place_weight_edit_changes_the_identity(hm):
    a = hm.capture(TEXTS, layers="all")
    ident = model_identity(hm.model)
    w = hm.blocks[0].mlp.down_proj.weight
    old = w.data.clone()
    w.data.view(-1)[::7] = 0.0  # an edit through .data does not bump the version counter
    assert model_identity(hm.model) != ident
    b = hm.capture(TEXTS, layers="all")
    assert hm.cache.stats.hits == 0 and not torch.equal(a, b)
    w.data.copy_(old)
    assert model_identity(hm.model) == ident  # same bytes again: same identity, entry reused
    assert torch.equal(hm.capture(TEXTS, layers="all"), a) and hm.cache.stats.hits == 1


def test_hooks_bypass_the_cache(hm):
    hm.capture(TEXTS, layers="all")
    with hm.hooks({1: lambda h: h + 1.0}):
        steered = hm.capture(TEXTS, layers="all")
    assert hm.cache.stats.bypassed == 1 and hm.cache.stats.hits == 0
    clean = hm.capture(TEXTS, layers="all")
    assert hm.cache.stats.hits == 1 and not torch.equal(steered, clean)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_corrupt_entry_is_detected_and_recomputed(hm, damage):
    a = hm.capture(TEXTS, layers="all")
    (path,) = hm.cache.entries()
    raw = path.read_bytes()
    if damage == "flip":  # one byte of tensor data (the end of the file)
        raw = raw[:-5] + bytes([raw[-5] ^ 0xFF]) + raw[-4:]
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "garbage":
        raw = b"\x00" * len(raw)
    else:
        raw = b""
    path.write_bytes(raw)
    n = hm.calls["n"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = hm.capture(TEXTS, layers="all")
    assert hm.calls["n"] > n, "a damaged entry must never be read"
    assert hm.cache.stats.corrupt == 1 and torch.equal(a, b)
    assert hm.cache.get(hm.cache.entries()[0].stem) is not None  # rewritten, valid again


def test_writes_are_atomic_and_leave_no_temp_files(hm, monkeypatch):
    import safetensors.torch as st

    def dies(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(st, "save_file", dies)
    with pytest.raises(OSError):
        hm.capture(TEXTS, layers="all")
    assert hm.cache.entries() == [] and not list(hm.cache.root.rglob("*.tmp"))


def test_store_models_use_the_manifest_checksums(tmp_path):
    m = tiny_model("llama").model
    d = tmp_path / "m"
    d.mkdir()
    man = {"files": {"model.safetensors": {"sha256": "a" * 64, "size": 1}}}
    (d / "STORE.json").write_text(json.dumps(man))
    m.name_or_path = str(d)
    ident = model_identity(m)
    m2 = tiny_model("llama").model
    m2.name_or_path = str(d)
    man["files"]["model.safetensors"]["sha256"] = "b" * 64
    (d / "STORE.json").write_text(json.dumps(man))
    assert model_identity(m2) != ident  # a different checksum in the store: a different model


def test_from_config(tmp_path):
    from omegaconf import OmegaConf

    assert from_config(OmegaConf.create({"cache": {"enabled": False, "dir": None}})) is None
    assert from_config(OmegaConf.create({})) is None
    c = from_config(OmegaConf.create({"cache": {"enabled": True, "dir": str(tmp_path)}}))
    assert c is not None and c.root == tmp_path


def test_rerun_of_a_job_reads_the_cache(tmp_path):
    from helpers import run_cfg

    ov = ["experiment=lens_smoke", "model=tiny_llama", f"cache.dir={tmp_path / 'acts'}", "cache.enabled=true"]
    r1 = run_cfg(ov, tmp_path / "a")
    r2 = run_cfg(ov + ["lens_norm=false"], tmp_path / "b")  # a readout change: same states
    assert "0 hits, 1 misses" in r1.read_text() and "1 hits, 0 misses" in r2.read_text()
    r3 = run_cfg(ov, tmp_path / "c")
    pd.testing.assert_frame_equal(pd.read_csv(r1.parent / "results.csv"), pd.read_csv(r3.parent / "results.csv"))
