"""Activation patching of the last-token residual, batched over the layer it starts at.

``patch_last_token`` runs each target prompt with the residual state at its last token
replaced by a source state at layer k (``span=1``), at k..k+span-1, or from k to the last
layer (``span=None``), and reads the model's own next-token distribution. Note that with
``span=None`` the last block's output at the last token is the source's too, and the
next-token distribution depends on nothing else: every start gives the source prompt's own
output. Only a span that ends before the last layer lets the target's context act on the
patched state (through attention in the layers after the span). All starts k of one target prompt run as one batch
(one forward per start, L+1 in all for k = 0..L), so "where is the concept fixed" costs a
single batched pass per prompt. Layer k is the output of block k (k = 0: the embedding
output), the same k that ``HubModel.capture`` and steering use, so a state captured at layer k
and written back at layer k is a no-op.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from hub.models.model import HubModel


def last_token_writer(rows: Tensor, values: Tensor) -> Callable[[Tensor], Tensor]:
    """A ``HubModel.hooks`` body writing ``values [m, d]`` into the last column of the selected
    batch ``rows`` (bool mask or indices) of ``h [batch, seq, d]``; left padding puts every
    item's last token there."""
    def fn(h: Tensor) -> Tensor:
        h = h.clone()
        h[rows.to(h.device), -1] = values.to(device=h.device, dtype=h.dtype)
        return h
    return fn


@torch.no_grad()
def patch_last_token(
    hm: HubModel,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    sources: Tensor,
    starts: Sequence[int],
    token_sets: Sequence[Sequence[Sequence[int]]],
    *,
    span: int | None = 1,
    batch_size: int = 32,
    prefix_cache: bool = True,
) -> Tensor:
    """Summed next-token probability of each token set after patching, per prompt and start.

    ``sources [n, L+1, d]`` are the states written into prompt i's last token (all layers,
    as ``capture(..., layers="all", positions="last")`` returns them); ``starts`` are the
    layers the patch begins at (``L+1`` means no patch); ``token_sets[i]`` holds prompt i's
    sets; ``span`` the number of layers patched from each start (None: to the last layer).
    Returns fp32 ``[n, len(starts), n_sets]``. Left padding keeps every prompt's last
    token at the last column, so one hook per layer serves the whole batch. ``prefix_cache``
    (default): each distinct prompt's tokens before the last run once per batch and every
    (prompt, start) row runs only its last token on a copy of that KV cache, so k = 0..L costs
    about one forward of the prompt plus L+1 one-token steps; ``False`` runs every row in
    full (the same numbers, as the tests check).
    """
    ids = hm.tokenize(prompts)
    n, L = len(ids), hm.n_layers
    if sources.ndim != 3 or sources.shape[0] != n or sources.shape[1] != L + 1 or sources.shape[2] != hm.d_model:
        raise ValueError(f"patch_last_token: sources have shape {tuple(sources.shape)}: expected "
                         f"[{n}, {L + 1}, {hm.d_model}] (prompts, layers 0..{L}, d_model)")
    if len(token_sets) != n:
        raise ValueError(f"patch_last_token: {len(token_sets)} token-set lists for {n} prompts")
    starts = [int(k) for k in starts]
    bad = [k for k in starts if not 0 <= k <= L + 1]
    if bad:
        raise IndexError(f"patch_last_token: starts {bad} out of range: expected 0..{L + 1} ({L + 1} = no patch)")
    if span is not None and span < 1:
        raise ValueError(f"patch_last_token: span={span}: expected a positive number of layers or None")
    n_sets = len(token_sets[0])
    if any(len(s) != n_sets for s in token_sets):
        raise ValueError("patch_last_token: every prompt needs the same number of token sets")
    items = [(i, k) for i in range(n) for k in starts]  # one forward row per (prompt, start)
    shared = prefix_cache and all(len(x) >= 2 for x in ids)
    out = torch.zeros(n, len(starts), n_sets)
    for b0 in range(0, len(items), batch_size):
        chunk = items[b0:b0 + batch_size]
        k_of = torch.tensor([k for _, k in chunk], device=hm.device)  # [b]
        src = sources[[i for i, _ in chunk]]  # [b, L+1, d]

        def writer(j: int):
            rows = (k_of <= j) if span is None else (k_of <= j) & (j < k_of + span)  # [b] patched at layer j
            return last_token_writer(rows, src[rows.cpu(), j]) if rows.any() else None

        fns = {j: f for j in range(L + 1) if (f := writer(j)) is not None}
        if shared:
            logits = _last_token_logits(hm, [ids[i] for i, _ in chunk], fns)
        else:
            with hm.hooks(fns):
                logits = hm.forward_batch(hm.collate([ids[i] for i, _ in chunk]), logits_to_keep=1).logits[:, -1]
        probs = torch.softmax(logits.float(), -1).cpu()  # [b, vocab]
        for r, (i, k) in enumerate(chunk):
            for s, tset in enumerate(token_sets[i]):
                out[i, starts.index(k), s] = probs[r, list(tset)].sum() if len(tset) else 0.0
    return out


@torch.no_grad()
def _last_token_logits(hm: HubModel, rows: Sequence[Sequence[int]], fns: dict) -> Tensor:
    """Next-token logits ``[b, vocab]`` of each row with ``fns`` hooked in, computing each distinct
    prompt's tokens before the last once (a patch at the last token cannot reach them: attention
    is causal) and then only the last token of every row, on a copy of that prefix's KV cache."""
    distinct = list(dict.fromkeys(tuple(r) for r in rows))
    which = torch.tensor([distinct.index(tuple(r)) for r in rows])  # [b] row -> distinct prompt
    pre = hm.collate([list(r[:-1]) for r in distinct])
    kw = _cache_keyword(hm)
    out = hm.model(input_ids=pre.input_ids, attention_mask=pre.attention_mask, position_ids=pre.position_ids,
                   use_cache=True, logits_to_keep=1)
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    cache.batch_select_indices(which.to(hm.device))
    mask = torch.cat([pre.attention_mask[which.to(hm.device)], torch.ones_like(which[:, None]).to(hm.device)], 1)
    last = torch.tensor([[r[-1]] for r in rows], device=hm.device)  # [b, 1]
    pos = torch.tensor([[len(r) - 1] for r in rows], device=hm.device)  # [b, 1]
    with hm.hooks(fns):
        logits = hm.model(input_ids=last, attention_mask=mask, position_ids=pos, use_cache=True,
                          logits_to_keep=1, **{kw: cache}).logits[:, -1]
    return logits


def _cache_keyword(hm: HubModel) -> str:
    """The name ``forward`` takes the KV cache under (transformers 5.24 renamed it ``cache``)."""
    return "cache" if "cache" in inspect.signature(hm.model.forward).parameters else "past_key_values"
