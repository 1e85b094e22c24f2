"""Per-item steering vectors: many steering conditions (cells) in one batch equal each cell run
on its own, with left padding, in plain forwards and greedy generation."""
import pytest
import torch

from hub.intervene import Intervention, generate_with, next_token_logprobs_with, steer
from hub.models.tiny import tiny_model

# different lengths, so every batch is left-padded
PROMPTS = ["The cat sat on the mat.", "Le chat", "5+3=8 and one two three four", "猫在垫子上。"]


def cells(hm) -> list[tuple[torch.Tensor, float]]:
    """(vector [d], scale) per cell; the zero cell is the unsteered baseline."""
    g = torch.Generator().manual_seed(0)
    v1, v2 = torch.randn(hm.d_model, generator=g), torch.randn(hm.d_model, generator=g)
    return [(v1, 1.0), (v2, 3.0), (torch.zeros(hm.d_model), 1.0), (v1, -2.0), (v2, 0.5)]


def per_item(hm, layer, positions="all") -> Intervention:
    """All cells × all prompts as one per-item intervention (row = scale * vector)."""
    rows = torch.stack([s * v for v, s in cells(hm) for _ in PROMPTS])  # [cells * prompts, d]
    return Intervention(rows, layer, positions, 1.0, per_item=True)


@pytest.mark.parametrize("family", ["llama", "gemma3"])
@pytest.mark.parametrize("positions,when", [("all", "all_steps"), ("last", "all_steps"), ("all", "prompt_only"),
                                            ([0, -1], "all_steps")])
def test_batched_cells_generate_as_each_cell_alone(family, positions, when):
    hm = tiny_model(family)
    k = 2
    rows = PROMPTS * len(cells(hm))
    # batch_size 7 does not divide the 20 rows: chunks cut across cells and prompts
    got = generate_with(hm, rows, per_item(hm, k, positions), max_new_tokens=5, when=when, batch_size=7,
                        return_ids=True)
    want = []
    for v, s in cells(hm):  # the existing single-vector path, one generate call per cell
        want += generate_with(hm, PROMPTS, Intervention(v, k, positions, s), max_new_tokens=5, when=when,
                              batch_size=4, return_ids=True)
    assert got == want
    zero = 2 * len(PROMPTS)  # cell 2 has the zero vector
    assert got[zero:zero + len(PROMPTS)] == generate_with(hm, PROMPTS, None, max_new_tokens=5, return_ids=True)
    # and a steered cell really differs from the unsteered one (the test can fail)
    assert got[:len(PROMPTS)] != got[zero:zero + len(PROMPTS)]


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_batched_cells_logprobs_equal_each_cell_alone(family):
    hm = tiny_model(family)
    rows = PROMPTS * len(cells(hm))
    got = next_token_logprobs_with(hm, rows, per_item(hm, 1), batch_size=6)
    want = torch.cat([next_token_logprobs_with(hm, PROMPTS, Intervention(v, 1, "all", s)) for v, s in cells(hm)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_per_item_replace_writes_each_row_into_its_own_item():
    """In one left-padded forward, row i is written at prompt i's last token (padding respected)."""
    hm = tiny_model("llama")
    rows = torch.randn(len(PROMPTS), hm.d_model, generator=torch.Generator().manual_seed(1))
    got = {}
    with steer(hm, Intervention(rows, 2, "last", 1.0, "replace", per_item=True)):
        with hm.hooks({2: lambda h: got.__setitem__("h", h.clone())}), torch.no_grad():
            hm.forward_batch(hm.collate(hm.tokenize(PROMPTS)))
    torch.testing.assert_close(got["h"][:, -1], rows, atol=1e-6, rtol=0)
    assert (got["h"][:, -2] - rows).abs().amax(1).min() > 1e-3  # earlier positions untouched


def test_per_item_bad_shapes_give_one_clear_error():
    hm = tiny_model("llama")
    d = hm.d_model
    with pytest.raises(ValueError, match=rf"shape \({d},\): per_item=True expects \[n_items, d\]"):
        Intervention(torch.zeros(d), 1, per_item=True)
    with pytest.raises(ValueError, match=rf"shape \(2, 3, {d}\): per_item=True expects"):
        Intervention(torch.zeros(2, 3, d), 1, per_item=True)
    with pytest.raises(ValueError, match=r"3 rows but there are 4 prompts: expected one row per prompt"):
        generate_with(hm, PROMPTS, Intervention(torch.zeros(3, d), 1, per_item=True), max_new_tokens=2)
    with pytest.raises(ValueError, match=r"3 rows but there are 4 prompts"):
        next_token_logprobs_with(hm, PROMPTS, Intervention(torch.zeros(3, d), 1, per_item=True))
    with pytest.raises(ValueError, match=rf"width 7 .*expected shape \[n_items, {d}\]"):
        generate_with(hm, PROMPTS, Intervention(torch.zeros(4, 7), 1, per_item=True), max_new_tokens=2)
    with pytest.raises(ValueError, match="4 rows but this forward has 2 items"):  # steer() on a mismatched batch
        with steer(hm, Intervention(torch.zeros(4, d), 1, per_item=True)):
            hm.forward_batch(hm.collate(hm.tokenize(PROMPTS[:2])))
