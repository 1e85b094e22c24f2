"""Interventions on the residual stream: add or write a vector at chosen layers and positions.

An :class:`Intervention` is ``(vector, layers, positions, scale, mode)``. At layer k it edits
the output of block k (k = 0: the embedding output), the same k that ``HubModel.capture``
reports, so ``capture`` inside :func:`steer` at layer k returns ``clean state + scale * v``
for ``mode="add"``. ``mode="replace"`` interpolates towards the vector,
``h <- h + scale * (v - h)``: scale 1 writes ``v`` exactly, scale 0 leaves ``h`` untouched
(so scale 0 is a no-op in both modes; the hook then does nothing at all).

Positions are in *unpadded* token coordinates of each prompt (as in ``hub.positions``):
``"all"`` (every real token), ``"last"``, explicit indices (negative from the end; one list
for every item or one per item) or boolean masks (one ``[seq_i]`` mask for every item or one
per item). A ``[p, d]`` vector pairs its rows with p explicit positions (ActAdd-style).
``per_item=True`` makes a ``[n, d]`` vector one vector per prompt instead (row i steers prompt
i, at the same layers and positions), so many steering conditions run as one batch: rows of a
forward are matched to the batch's items in order, and ``generate_with`` /
``next_token_logprobs_with`` slice the rows with their prompt chunks.

Generation. A forward pre-hook on the top-level model reads each call's attention mask, so the
hooks know the left padding of every item and how many tokens the KV cache already holds. The
first call of a generation (empty cache) is the prompt; later calls are generated tokens.
With ``when="all_steps"`` the positions ``"all"`` and ``"last"`` extend to every generated
token (each is the last token of its step); with ``"prompt_only"`` only the prompt is edited.
Explicit indices and masks always name prompt tokens. Hooks are removed on exit, also when
the forward or the body of the ``with`` raises.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from hub.models import HubModel
from hub.positions import PositionSpec

Mode = Literal["add", "replace"]
When = Literal["all_steps", "prompt_only"]
Positions = PositionSpec | Tensor | Sequence[Tensor]


@dataclass
class Intervention:
    """Edit the residual stream: ``vector`` ``[d]`` or ``[p, d]`` at ``layers`` and ``positions``;
    with ``per_item``, ``vector`` is ``[n, d]``: row i for prompt i."""

    vector: Tensor
    layers: int | Sequence[int]
    positions: Positions = "all"
    scale: float = 1.0
    mode: Mode = "add"
    per_item: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("add", "replace"):
            raise ValueError(f"Intervention.mode={self.mode!r}: expected 'add' or 'replace'")
        v = torch.as_tensor(self.vector)
        if self.per_item and (v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0):
            raise ValueError(f"Intervention.vector has shape {tuple(v.shape)}: per_item=True expects "
                             "[n_items, d], one row per prompt")
        if v.ndim not in (1, 2) or v.shape[-1] == 0 or (v.ndim == 2 and v.shape[0] == 0):
            raise ValueError(f"Intervention.vector has shape {tuple(v.shape)}: expected [d] or [p, d]")
        if not torch.isfinite(v).all():
            raise ValueError("Intervention.vector contains NaN or inf")
        if not math.isfinite(float(self.scale)):
            raise ValueError(f"Intervention.scale={self.scale!r}: expected a finite number")
        self.vector = v.detach()
        self.layers = [self.layers] if isinstance(self.layers, int) else list(self.layers)
        if isinstance(self.positions, str) and self.positions not in ("all", "last"):
            raise ValueError(f"Intervention.positions={self.positions!r}: expected 'all', 'last', "
                             "a list of token indices or a boolean mask")
        if self.paired > 1 and isinstance(self.positions, str):
            raise ValueError(f"a [p, d] vector with p={self.vector.shape[0]} needs p explicit positions, "
                             f"not positions={self.positions!r}")

    @property
    def rows(self) -> Tensor:
        """The vector as ``[p, d]``."""
        return self.vector if self.vector.ndim == 2 else self.vector[None]

    @property
    def paired(self) -> int:
        """How many rows pair with explicit positions (p of a ``[p, d]`` vector; 1 per item)."""
        return 1 if self.per_item else self.rows.shape[0]

    def take(self, start: int, stop: int) -> Intervention:
        """This intervention for prompts ``start:stop`` (per-item rows sliced; else itself)."""
        return dataclasses.replace(self, vector=self.vector[start:stop]) if self.per_item else self

    def check(self, hm: HubModel) -> None:
        """Raise if the vector width or the layers do not fit ``hm``."""
        if self.vector.shape[-1] != hm.d_model:
            want = f"[n_items, {hm.d_model}]" if self.per_item else f"[{hm.d_model}] or [p, {hm.d_model}]"
            raise ValueError(f"Intervention.vector has width {self.vector.shape[-1]} but {hm.name} has "
                             f"d_model={hm.d_model}: expected shape {want}")
        hm.check_layers(self.layers)


# ---------------------------------------------------------------- call bookkeeping
@dataclass
class _Call:
    """What the current forward call covers: padding per item and absolute positions."""

    pads: Tensor | None = None  # [batch] left-padding tokens per item (None: unknown = 0)
    past: int = 0  # tokens already in the KV cache
    prompt_len: int = 0  # padded prompt length S of the current generation


@dataclass
class _State:
    call: _Call = field(default_factory=_Call)


def _cache_length(kwargs: dict) -> int | None:
    """Tokens already in the KV cache this call was given, or None when no cache was passed.

    The cache is found by what it is (an object with ``get_seq_length``), not by its keyword:
    transformers renamed ``past_key_values`` to ``cache`` in ``forward`` (5.24), and the name
    may move again.
    """
    for key in ("past_key_values", "cache"):
        cache = kwargs.get(key)
        if cache is not None and hasattr(cache, "get_seq_length"):
            return int(cache.get_seq_length())
    for value in kwargs.values():
        if hasattr(value, "get_seq_length") and not isinstance(value, Tensor):
            return int(value.get_seq_length())
    pos = kwargs.get("cache_position")
    if isinstance(pos, Tensor) and pos.numel():
        return int(pos.flatten()[0])
    return None


def _read_call(state: _State, kwargs: dict) -> None:
    """Top-level pre-hook body: record padding and cache offset of this forward call.

    How many tokens precede this call comes from the KV cache passed in (any version's
    keyword), else from the attention mask being longer than the input. generate() omits the
    mask when nothing is padded, so the mask alone cannot tell a decoding step from a prompt.
    """
    ids = kwargs.get("input_ids")
    emb = kwargs.get("inputs_embeds")
    T = ids.shape[1] if ids is not None else (emb.shape[1] if emb is not None else None)
    mask = kwargs.get("attention_mask")
    past = _cache_length(kwargs)
    if past is None:
        past = mask.shape[1] - T if isinstance(mask, Tensor) and mask.ndim == 2 and T is not None else 0
    pads = None
    if isinstance(mask, Tensor) and mask.ndim == 2:
        # left padding: pads = index of the first real token
        pads = (mask.long().cumsum(1) == 0).sum(1)
    c = state.call
    if past == 0:  # a fresh prompt (plain forward or the first step of a generation)
        state.call = _Call(pads=pads, past=0, prompt_len=T or 0)
    else:
        state.call = _Call(pads=pads if pads is not None else c.pads, past=past, prompt_len=c.prompt_len)


def _prompt_indices(positions: Positions, lengths: Sequence[int], n_rows: int) -> list[list[int]] | str:
    """Per item, unpadded prompt indices (validated); or the string mode."""
    if isinstance(positions, str):
        return positions
    n = len(lengths)
    if isinstance(positions, Tensor) and positions.dtype != torch.bool:
        positions = positions.tolist()
    if isinstance(positions, Tensor):  # boolean masks: [seq] for every item or [batch, seq]
        per_item = [positions] * n if positions.ndim == 1 else list(positions)
    else:
        nested = len(positions) > 0 and not isinstance(positions[0], int)
        per_item = list(positions) if nested else [positions] * n
    if len(per_item) != len(lengths):
        raise ValueError(f"positions: got {len(per_item)} per-item entries for a batch of {len(lengths)} items")
    out = []
    for b, (p, L) in enumerate(zip(per_item, lengths)):
        if isinstance(p, Tensor) and p.dtype == torch.bool:
            if p.shape[0] != L:
                raise IndexError(f"item {b}: boolean position mask has length {p.shape[0]} but the prompt "
                                 f"has {L} tokens: expected a mask of length {L}")
            idx = torch.nonzero(p).flatten().tolist()
        else:
            idx = []
            for i in (p.tolist() if isinstance(p, Tensor) else p):
                j = i + L if i < 0 else i
                if not 0 <= j < L:
                    raise IndexError(f"item {b}: position {i} is beyond the prompt of {L} tokens "
                                     f"(valid: {-L}..{L - 1})")
                idx.append(j)
        if not idx:
            raise ValueError(f"item {b}: positions select no token")
        if n_rows > 1 and len(idx) != n_rows:
            raise ValueError(f"item {b}: a [p, d] vector with p={n_rows} needs exactly {n_rows} positions, "
                             f"got {len(idx)}")
        out.append(idx)
    return out


def _edit(iv: Intervention, h: Tensor, call: _Call, when: When) -> Tensor | None:
    """Apply one intervention to a block output ``h [batch, T, d]`` of the current call."""
    if iv.scale == 0:
        return None
    B, T, _ = h.shape
    dev = h.device
    pads = call.pads.to(dev) if call.pads is not None else torch.zeros(B, dtype=torch.long, device=dev)
    S = call.prompt_len
    absolute = call.past + torch.arange(T, device=dev)  # [T] padded absolute positions
    in_prompt = absolute < S  # [T]
    real = absolute[None, :] >= pads[:, None]  # [B, T]
    rows = iv.rows.to(device=dev, dtype=h.dtype)  # [p, d], or [B, d] per item
    if iv.per_item and rows.shape[0] != B:
        raise ValueError(f"a per-item Intervention.vector has {rows.shape[0]} rows but this forward has {B} "
                         "items: expected one row per prompt (generate_with and next_token_logprobs_with "
                         "slice the rows with their batches)")
    vec = rows[:, None].expand(B, T, -1) if iv.per_item else rows[0].expand(B, T, -1)  # [B, T, d]
    steps = when == "all_steps"
    mode = iv.positions if isinstance(iv.positions, str) else "index"
    if mode == "all":
        sel = real & (in_prompt[None] | steps)
    elif mode == "last":
        sel = ((absolute == S - 1) | (~in_prompt & steps))[None].expand(B, T)
    else:
        sel = torch.zeros(B, T, dtype=torch.bool, device=dev)
        if call.past == 0 or in_prompt.any():
            lengths = (S - pads).tolist()
            idx = _prompt_indices(iv.positions, lengths, iv.paired)
            vec = torch.zeros(B, T, h.shape[-1], dtype=h.dtype, device=dev)
            for b, ii in enumerate(idx):
                for r, i in enumerate(ii):
                    t = int(pads[b]) + i - call.past
                    if 0 <= t < T:
                        sel[b, t] = True
                        vec[b, t] = rows[b if iv.per_item else (r if rows.shape[0] > 1 else 0)]
    if not sel.any():
        return None
    m = sel[..., None].to(h.dtype)  # [B, T, 1]
    if iv.mode == "add":
        return h + iv.scale * m * vec
    return h + iv.scale * m * (vec - h)


@contextlib.contextmanager
def steer(hm: HubModel, interventions: Intervention | Sequence[Intervention], when: When = "all_steps"
          ) -> Iterator[None]:
    """Apply ``interventions`` to every forward of ``hm`` inside the block (generation included).

    Several interventions at one layer are applied in the order given. Per-item positions and
    per-item vectors follow the rows of each forward's batch (``HubModel.capture`` reorders
    items by length; :func:`next_token_logprobs_with` and :func:`generate_with` keep prompt
    order). Everything is removed on exit, also on an exception.
    """
    ivs = [interventions] if isinstance(interventions, Intervention) else list(interventions)
    if when not in ("all_steps", "prompt_only"):
        raise ValueError(f"when={when!r}: expected 'all_steps' or 'prompt_only'")
    for iv in ivs:
        iv.check(hm)
    if not ivs:
        yield
        return
    state = _State()
    by_layer: dict[int, list[Intervention]] = {}
    for iv in ivs:
        for k in iv.layers:
            by_layer.setdefault(k, []).append(iv)

    def layer_fn(group: list[Intervention]):
        def fn(h: Tensor) -> Tensor | None:
            out = None
            for iv in group:
                new = _edit(iv, h if out is None else out, state.call, when)
                out = new if new is not None else out
            return out
        return fn

    def pre(_mod, _args, kwargs):
        _read_call(state, kwargs)

    handle = hm.model.register_forward_pre_hook(pre, with_kwargs=True)
    try:
        with hm.hooks({k: layer_fn(g) for k, g in by_layer.items()}):
            yield
    finally:
        handle.remove()


# ------------------------------------------------------------------- running
def _check_positions(ivs: Sequence[Intervention], ids: Sequence[Sequence[int]]) -> None:
    """Validate explicit positions and per-item rows against the prompts before any forward runs."""
    lengths = [len(x) for x in ids]
    for iv in ivs:
        if iv.per_item and iv.vector.shape[0] != len(ids):
            raise ValueError(f"a per-item Intervention.vector has {iv.vector.shape[0]} rows but there are "
                             f"{len(ids)} prompts: expected one row per prompt")
        if not isinstance(iv.positions, str):
            _prompt_indices(iv.positions, lengths, iv.paired)


def _as_list(interventions) -> list[Intervention]:
    if interventions is None:
        return []
    return [interventions] if isinstance(interventions, Intervention) else list(interventions)


@torch.no_grad()
def next_token_logprobs_with(
    hm: HubModel,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    interventions: Intervention | Sequence[Intervention] | None = (),
    token_ids: Sequence[int] | Tensor | None = None,
    batch_size: int = 16,
) -> Tensor:
    """Next-token log-probabilities after each prompt under the interventions.

    Returns fp32 ``[n, vocab]``, or ``[n, k]`` for the ``k`` given ``token_ids``. Per-item
    position lists are matched to the prompts in order (the prompts then run as one batch).
    """
    ivs = _as_list(interventions)
    ids = hm.tokenize(prompts)
    _check_positions(ivs, ids)
    sel = torch.as_tensor(list(token_ids) if not isinstance(token_ids, Tensor) else token_ids,
                          dtype=torch.long) if token_ids is not None else None
    per_item = any(not isinstance(iv.positions, str) and _is_per_item(iv.positions) for iv in ivs)
    if per_item:
        batch_size = max(batch_size, len(ids))
    out = []
    for i in range(0, len(ids), batch_size):
        batch = hm.collate(ids[i:i + batch_size])
        with steer(hm, [iv.take(i, i + batch_size) for iv in ivs]):
            logits = hm.forward_batch(batch, logits_to_keep=1).logits[:, -1].float()  # [b, vocab]
        lp = torch.log_softmax(logits, -1)
        out.append((lp[:, sel.to(lp.device)] if sel is not None else lp).cpu())
    return torch.cat(out)


def _is_per_item(positions) -> bool:
    """One position list (or mask) per item, rather than one for every item."""
    if isinstance(positions, Tensor):
        return positions.dtype == torch.bool and positions.ndim == 2
    return len(positions) > 0 and not isinstance(positions[0], int)


@torch.no_grad()
def generate_with(
    hm: HubModel,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    interventions: Intervention | Sequence[Intervention] | None = (),
    max_new_tokens: int = 20,
    when: When = "all_steps",
    batch_size: int = 16,
    do_sample: bool = False,
    return_ids: bool = False,
    **generate_kwargs,
) -> list[str] | list[list[int]]:
    """Generate continuations (greedy by default) with the interventions hooked in.

    Returns the decoded new text per prompt (or its token ids with ``return_ids``), padding
    and prompt removed. ``when`` chooses every step or the prompt pass only.
    """
    ivs = _as_list(interventions)
    ids = hm.tokenize(prompts)
    _check_positions(ivs, ids)
    if any(not isinstance(iv.positions, str) and _is_per_item(iv.positions) for iv in ivs):
        batch_size = max(batch_size, len(ids))
    tok = hm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    kw = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad)
    if not do_sample:
        kw.update(temperature=None, top_p=None, top_k=None)
    kw.update(generate_kwargs)
    out: list = []
    for i in range(0, len(ids), batch_size):
        batch = hm.collate(ids[i:i + batch_size])
        with steer(hm, [iv.take(i, i + batch_size) for iv in ivs], when=when):
            seqs = hm.model.generate(input_ids=batch.input_ids, attention_mask=batch.attention_mask, **kw)
        new = seqs[:, batch.input_ids.shape[1]:].tolist()
        eos = tok.eos_token_id
        for row in new:
            if eos is not None and eos in row:  # cut after the first eos; drop the rest (padding)
                row = row[:row.index(eos) + 1]
            out.append(row if return_ids else tok.decode(row, skip_special_tokens=True))
    return out
