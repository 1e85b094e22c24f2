"""Sharding and offload through accelerate (``model.device_map``): a tiny model saved to disk and
reloaded with some blocks offloaded to disk reads the same states as the plain model, and the
lens, steering and perplexity work on it; a region edit on offloaded weights fails clearly."""
from __future__ import annotations

import pytest
import torch

from hub.errors import UserError
from hub.intervene.steer import Intervention, next_token_logprobs_with
from hub.lens import LogitLens
from hub.models import load_model
from hub.models.causal_lm import placement_kwargs
from hub.models.tiny import tiny_model
from hub.perplexity import perplexity
from hub.regions.edit import ablate
from hub.regions.masks import Mask

TEXTS = ["The cat sat on the mat.", "Le chat", "5+3=8 and one two three four"]
TOL = 1e-5


def _split_map(n_layers: int) -> dict:
    """Embedding, first half of the blocks, final norm and unembedding in memory; the rest on disk."""
    dm = {"model.embed_tokens": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}
    for i in range(n_layers):
        dm[f"model.layers.{i}"] = "cpu" if i < n_layers // 2 else "disk"
    return dm


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """The plain tiny llama and the same weights reloaded through the loader with disk offload."""
    ref = tiny_model("llama", seed=0)
    where = tmp_path_factory.mktemp("tiny_llama")
    ref.model.save_pretrained(where)
    ref.tokenizer.save_pretrained(where)
    off = load_model(str(where), device_map=_split_map(ref.n_layers),
                     offload_folder=str(tmp_path_factory.mktemp("offload")))
    return ref, off


def test_some_blocks_really_are_on_disk(pair):
    _, off = pair
    devices = {p.device.type for p in off.model.parameters()}
    assert devices == {"cpu", "meta"}  # meta = offloaded: accelerate loads them block by block
    assert off.device == torch.device("cpu")


def test_offloaded_capture_equals_plain(pair):
    ref, off = pair
    for pos in ("last", "mean"):
        a = ref.capture(TEXTS, layers="all", positions=pos, batch_size=2)  # [n, layer, d]
        b = off.capture(TEXTS, layers="all", positions=pos, batch_size=2)
        assert b.dtype == torch.float32 and b.device.type == "cpu"
        assert (a - b).abs().max() <= TOL
    # early stop inside the offloaded half, and per-token states
    a = ref.capture(TEXTS, layers=[ref.n_layers - 1], positions="all")
    b = off.capture(TEXTS, layers=[ref.n_layers - 1], positions="all")
    assert all((x - y).abs().max() <= TOL for x, y in zip(a, b))


def test_lens_steering_and_perplexity_on_offloaded_model(pair):
    ref, off = pair
    st = ref.capture(TEXTS, layers="all", positions="last")
    torch.testing.assert_close(LogitLens(off).logits(st), LogitLens(ref).logits(st), atol=TOL, rtol=0)
    vec = torch.randn(ref.d_model, generator=torch.Generator().manual_seed(0))
    iv = Intervention(vec, layers=[ref.n_layers - 1], scale=4.0)  # a block that lives on disk
    a = next_token_logprobs_with(ref, TEXTS, [iv])
    b = next_token_logprobs_with(off, TEXTS, [iv])
    base = next_token_logprobs_with(off, TEXTS, [])
    assert (a - b).abs().max() <= 1e-4
    assert (b - base).abs().max() > 1e-2  # the steering vector did act on the offloaded block
    text = " ".join(TEXTS * 4)
    p_ref, p_off = perplexity(ref, text, window=16), perplexity(off, text, window=16)
    assert p_ref.n_windows >= 2 and abs(p_ref.value - p_off.value) <= 1e-4 * p_ref.value


def test_region_edit_on_offloaded_weights_is_a_clear_error(pair):
    ref, off = pair
    name = f"model.layers.{ref.n_layers - 1}.mlp.down_proj.weight"  # on disk
    shape = tuple(dict(off.model.named_parameters())[name].shape)
    mask = Mask("r", {name: torch.tensor([0, 1, 2])}, {name: shape})
    with pytest.raises(UserError, match="offloaded by model.device_map"):
        with ablate(off, mask):
            pass
    kept = "model.layers.0.mlp.down_proj.weight"  # in memory: edits and restores as before
    w = dict(off.model.named_parameters())[kept]
    before = w.detach().clone()
    with ablate(off, Mask("r", {kept: torch.tensor([0, 1])}, {kept: tuple(w.shape)})):
        assert bool((w.reshape(-1)[:2] == 0).all())
    assert torch.equal(w, before)


@pytest.mark.parametrize("kw, match", [
    ({"device_map": "everywhere"}, "expected one of auto, balanced"),
    ({"device_map": {"model": "disk"}}, "set model.offload_folder"),
    ({"max_memory": {"cpu": "1GB"}}, "need model.device_map"),
    ({"device_map": 3}, "expected a name or a module"),
])
def test_bad_placement_is_one_clear_line(kw, match):
    with pytest.raises(UserError, match=match):
        placement_kwargs(**kw)


def test_placement_kwargs_pass_through():
    kw = placement_kwargs("auto", {"0": "20GiB", "cpu": "60GiB"}, "/tmp/off")
    assert kw == {"device_map": "auto", "max_memory": {0: "20GiB", "cpu": "60GiB"}, "offload_folder": "/tmp/off"}


def test_placement_on_another_kind_is_a_clear_error():
    with pytest.raises(UserError, match="model.device_map is supported for model.kind=causal_lm only"):
        load_model("tiny:whisper", kind="whisper", device_map="auto")
