"""The streamed lens reductions at vocabulary-block boundaries.

``LogitLens.reduce`` and ``target_logprob`` stream the unembedding in blocks of vocabulary
columns and pick each set/target token out of the block that holds it. A token in the first
or the last column of a block is where an off-by-one in that selection shows (a block-start
token left in uninitialised memory: set probabilities of ``inf`` or 1e17). These tests put
tokens at both edges of every block, with blocks forced small, and compare against a full
softmax over the whole vocabulary.
"""
from __future__ import annotations

import pytest
import torch

from hub.lens import LogitLens
from hub.models.tiny import tiny_model

TEXTS = ["The cat sat on the mat.", "Le chat", "5+3=8 and one two three four", "猫在垫子上。"]
VOCAB = 1000  # 128-column blocks at the smallest block size: 8 blocks, the last one short (104)


def _edges(lens: LogitLens, rows: int) -> tuple[int, list[int]]:
    """The block width the lens streams with for ``rows`` rows, and every block's first and last id."""
    step = lens._vocab_step(rows)
    V = lens.hm.vocab_size
    assert step < V, "the test needs several blocks"
    edges = sorted({t for v0 in range(0, V, step) for t in (v0, min(v0 + step, V) - 1)})
    return step, edges


@pytest.fixture(scope="module", params=["llama", "gemma3"])  # gemma3: logit softcap
def hm(request):
    return tiny_model(request.param, vocab_size=VOCAB)


@pytest.fixture(scope="module")
def states(hm):
    st = hm.capture(TEXTS, layers="all", positions="last")  # [n, layer, d]
    return st * 4.0  # sharper distributions, so a wrong token's probability differs clearly


@pytest.mark.parametrize("row_chunk", [1, 3, 10**6])  # rows per chunk: one, several, all
def test_reduce_sets_at_block_edges_match_full_softmax(hm, states, row_chunk):
    lens = LogitLens(hm, max_chunk_bytes=4 * hm.vocab_size * row_chunk, vocab_chunk_bytes=1)
    n, L, _ = states.shape
    step, edges = _edges(lens, min(row_chunk, n * L))
    assert len(edges) >= 8 and 0 in edges and step in edges and step - 1 in edges
    starts = [t for t in edges if t % step == 0]
    ends = [t for t in edges if t % step != 0]
    # one singleton set per edge token (each must be right on its own), plus the set of all
    # block starts, all block ends, and a set that mixes edges with interior tokens
    sets = [[t] for t in edges] + [starts, ends, [starts[1], 5, ends[2], step + 7]]
    red = lens.reduce(states, token_sets=[sets] * n)
    p = torch.softmax(lens.logits(states), -1)  # [n, layer, vocab] reference
    ref = torch.stack([p[..., s].sum(-1) for s in sets], -1)
    assert torch.isfinite(red["set_prob"]).all()
    torch.testing.assert_close(red["set_prob"], ref, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("row_chunk", [1, 5, 10**6])
def test_target_logprob_at_block_edges_matches_log_softmax(hm, states, row_chunk):
    lens = LogitLens(hm, max_chunk_bytes=4 * hm.vocab_size * row_chunk, vocab_chunk_bytes=1)
    n, L, _ = states.shape
    _, edges = _edges(lens, min(row_chunk, n * L))
    # every (state, edge token) pair: targets [n, layer, edges], states repeated to match
    st = states[:, :, None, :].expand(n, L, len(edges), states.shape[-1])
    tgt = torch.tensor(edges).expand(n, L, len(edges))
    got = lens.target_logprob(st, tgt)
    ref = torch.log_softmax(lens.logits(states), -1)[..., edges]  # [n, layer, edges]
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-5)
