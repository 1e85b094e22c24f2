"""Steering directions: mean differences of captured states, unembedding rows, a scale unit.

The vectors that :class:`hub.intervene.steer.Intervention` adds or writes: ``[d]`` (one vector
at every edited position) or ``[p, d]`` (one per explicit position).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from hub.models import HubModel
from hub.positions import PositionSpec


# ----------------------------------------------------------------- vector builders
def from_states(positive: Tensor, negative: Tensor | None = None) -> Tensor:
    """Mean of ``positive`` states ``[n, ..., d]`` minus the mean of ``negative`` ``[m, ..., d]``.

    Works on states from any modality adapter or capture call; ``[n, d] -> [d]`` and
    ``[n, p, d] -> [p, d]``. Without ``negative`` it is the plain mean.
    """
    for name, s in (("positive", positive), ("negative", negative)):
        if s is None:
            continue
        if s.ndim < 2 or s.shape[0] == 0:
            raise ValueError(f"from_states: {name} states have shape {tuple(s.shape)}: expected a non-empty "
                             "[n, d] or [n, p, d] tensor")
    v = positive.float().mean(0)
    if negative is not None:
        if negative.shape[1:] != positive.shape[1:]:
            raise ValueError(f"from_states: positive states {tuple(positive.shape)} and negative states "
                             f"{tuple(negative.shape)} differ beyond the first axis")
        v = v - negative.float().mean(0)
    return v


def mean_difference(
    hm: HubModel,
    positive: Sequence[str],
    negative: Sequence[str],
    layer: int,
    positions: PositionSpec = "last",
    batch_size: int = 16,
) -> Tensor:
    """ActAdd-style direction: mean state of ``positive`` inputs minus that of ``negative`` at ``layer``.

    ``positions`` as in ``HubModel.capture``: ``"last"``/``"mean"`` give ``[d]``; explicit
    indices give ``[p, d]`` (the inputs must then be long enough).
    """
    for name, s in (("positive", positive), ("negative", negative)):
        if len(s) == 0:
            raise ValueError(f"mean_difference: the {name} input set is empty: expected at least one input")
    hm.check_layers([layer])
    pos = hm.capture(list(positive), layers=[layer], positions=positions, batch_size=batch_size)[:, 0]
    neg = hm.capture(list(negative), layers=[layer], positions=positions, batch_size=batch_size)[:, 0]
    return from_states(pos, neg)


def token_id(hm: HubModel, token: str | int) -> int:
    """One vocabulary id for a token string (must be a single token) or an id."""
    if isinstance(token, int):
        if not 0 <= token < hm.vocab_size:
            raise IndexError(f"token id {token} is outside the vocabulary 0..{hm.vocab_size - 1}")
        return token
    ids = hm.tokenizer(token, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = [hm.tokenizer.decode([i]) for i in ids]
        raise ValueError(f"token {token!r} is {len(ids)} tokens {pieces} for {hm.name}: expected a single "
                         "token (pass an id, or a string the tokenizer keeps whole)")
    return ids[0]


def unembedding_direction(hm: HubModel, a: str | int | Sequence[str | int],
                          b: str | int | Sequence[str | int] | None = None) -> Tensor:
    """``W_U[a] - W_U[b]`` ``[d]`` (fp32); a list of tokens on either side is averaged."""
    def rows(t) -> Tensor:
        toks = [t] if isinstance(t, (str, int)) else list(t)
        if not toks:
            raise ValueError("unembedding_direction: empty token list: expected at least one token")
        idx = torch.tensor([token_id(hm, x) for x in toks])
        return hm.unembed.weight[idx.to(hm.device)].detach().float().mean(0).cpu()
    v = rows(a)
    return v - rows(b) if b is not None else v


@torch.no_grad()
def mean_state_norm(hm: HubModel, prompts: Sequence[str], layer: int, positions: PositionSpec = "last",
                    batch_size: int = 16) -> float:
    """Mean L2 norm of the residual states at ``layer``: a natural unit for steering scales.

    With ``positions="all"`` the BOS token is left out (its state is often orders of magnitude
    larger than the others' and would dominate the mean).
    """
    st = hm.capture(list(prompts), layers=[layer], positions=positions, batch_size=batch_size)
    if isinstance(st, list):
        bos = getattr(hm.tokenizer, "bos_token_id", None)
        ids = hm.tokenize(list(prompts))
        keep = [s[0, int(bos is not None and len(x) > 1 and x[0] == bos):] for s, x in zip(st, ids)]
        return float(torch.cat(keep).norm(dim=-1).mean())
    return float(st[:, 0].norm(dim=-1).mean())
