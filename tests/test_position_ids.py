"""Position ids under left padding, for the RoPE families too.

RoPE makes attention depend on position differences only, so ids that are off by a constant
per row (e.g. counting the left padding) leave a RoPE model's states unchanged, and a padded-
versus-one-by-one comparison of states cannot see them (only GPT-2's absolute positions can).
Such ids still break whatever reads absolute positions (Qwen2-VL's 3-D rope, Whisper, GPT-2,
long-context scaling), so these tests check the ids the rotary embedding actually receives:
each item's real tokens at 0..len-1, whatever the padding.
"""
from __future__ import annotations

import pytest
import torch

from hub.models.tiny import tiny_model

TEXTS = ["The cat sat on the mat.", "Le chat", "5+3=8 and one two three four", "猫在垫子上。"]
ROPE_FAMILIES = ("llama", "mistral", "qwen2", "gemma3")


def rotary_position_ids(hm, texts, **capture_kw) -> list[torch.Tensor]:
    """``position_ids [batch, seq]`` of every rotary-embedding call during one capture."""
    seen: list[torch.Tensor] = []
    mods = [m for m in hm.model.modules() if "Rotary" in type(m).__name__]
    assert mods, f"no rotary embedding found in {type(hm.model).__name__}"

    def grab(_m, args, kwargs):
        pos = kwargs.get("position_ids", args[1] if len(args) > 1 else None)
        assert pos is not None, "the rotary embedding was called without position ids"
        seen.append(pos.detach().clone())

    handles = [m.register_forward_pre_hook(grab, with_kwargs=True) for m in mods]
    try:
        hm.capture(texts, **capture_kw)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("family", ROPE_FAMILIES)
def test_rope_gets_real_positions_under_left_padding(family):
    hm = tiny_model(family)
    lengths = [len(x) for x in hm.tokenize(TEXTS)]
    assert len(set(lengths)) > 1, "the batch must need padding"
    seen = rotary_position_ids(hm, TEXTS, layers="all", positions="last", batch_size=len(TEXTS))
    assert seen
    order = sorted(range(len(TEXTS)), key=lambda i: lengths[i])  # capture batches items by length
    for pos in seen:
        assert pos.shape == (len(TEXTS), max(lengths))
        for row, i in enumerate(order):
            n = lengths[i]
            assert pos[row, -n:].tolist() == list(range(n)), (family, TEXTS[i], pos[row].tolist())


@pytest.mark.parametrize("family", ROPE_FAMILIES)
def test_one_by_one_and_padded_runs_see_the_same_positions(family):
    """The same item gets the same ids alone and in a padded batch (and the same states)."""
    hm = tiny_model(family)
    alone = rotary_position_ids(hm, TEXTS[1:2], layers=[1], positions="all")[0]
    padded = rotary_position_ids(hm, TEXTS, layers=[1], positions="all", batch_size=len(TEXTS))[0]
    n = alone.shape[-1]
    assert padded.shape[-1] > n
    row = sorted(range(len(TEXTS)), key=lambda i: len(hm.tokenize([TEXTS[i]])[0])).index(1)
    assert padded[row, -n:].tolist() == alone[0].tolist()
    a = hm.capture(TEXTS[1:2], layers="all", positions="all")[0]
    b = hm.capture(TEXTS, layers="all", positions="all", batch_size=len(TEXTS))[1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
