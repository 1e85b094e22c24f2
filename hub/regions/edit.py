"""Editing regions in place and restoring them: ablate, perturb, scale dimensions, freeze.

Editing (``ablate``, ``edit``) happens inside a context manager that restores the edited
entries bit-for-bit on exit, also on an exception.
"""
from __future__ import annotations

import contextlib
import fnmatch
import random as _random
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn as nn
from torch import Tensor
from tqdm.auto import tqdm

from hub.errors import UserError, UserIndexError
from hub.models import HubModel
from hub.perplexity import batch_nll, token_windows
from hub.regions.importance import grad_only, select_parameters
from hub.regions.masks import Mask, check_fits, params_of

# Modules whose output is added back into the residual stream (they *write* a hidden dimension
# through a row of their weight); every other matrix with an input of size d *reads* it.
WRITERS = ("*.o_proj.*", "*.down_proj.*", "*.c_proj.*", "*.out_proj.*", "*.fc2.*", "*.dense_4h_to_h.*",
           "*.wo.*")


def _flat(p: Tensor) -> Tensor:
    if not p.is_contiguous():
        raise ValueError("cannot edit a non-contiguous parameter in place")
    return p.data.view(-1)


def check_in_memory(params: Mapping[str, Tensor]) -> None:
    """Region edits write weights in place: a weight accelerate offloaded (to disk, or to the CPU
    behind an accelerator) is a ``meta`` placeholder that an in-place edit would silently miss."""
    off = [n for n, p in params.items() if p.device.type == "meta"]
    if off:
        raise UserError(f"region edit: {len(off)} weight(s) are offloaded by model.device_map (e.g. {off[0]}); "
                        "expected every edited weight in memory: load without disk/CPU offload "
                        "(no 'disk' in the map, or enough max_memory)")


@contextlib.contextmanager
def edit(hm: HubModel, mask: Mask | None, fn: Callable[[Tensor], Tensor]) -> Iterator[Mask | None]:
    """Replace the masked entries ``v [n]`` by ``fn(v)`` inside; restore them bit-for-bit on exit."""
    if mask is None:
        yield None
        return
    check_fits(hm, mask)
    params = params_of(hm, mask)
    check_in_memory(params)
    saved: list[tuple[Tensor, Tensor, Tensor]] = []
    try:
        with torch.no_grad():
            for n, idx in mask.index.items():
                if idx.numel() == 0:
                    continue
                flat = _flat(params[n])
                idx = idx.to(flat.device)
                saved.append((flat, idx, flat[idx].clone()))
                flat[idx] = fn(flat[idx]).to(flat.dtype)
        yield mask
    finally:
        with torch.no_grad():
            for flat, idx, old in reversed(saved):
                flat[idx] = old


def ablate(hm: HubModel, mask: Mask | None) -> contextlib.AbstractContextManager:
    """Zero the region's parameters inside the ``with`` block (``None``: no-op)."""
    return edit(hm, mask, torch.zeros_like)


@contextlib.contextmanager
def restoring(hm: HubModel, names: Sequence[str]) -> Iterator[None]:
    """Snapshot whole parameters and copy them back bit-for-bit on exit (for training runs)."""
    named = dict(hm.model.named_parameters())
    saved = {n: named[n].detach().clone() for n in names}
    try:
        yield
    finally:
        with torch.no_grad():
            for n, v in saved.items():
                named[n].copy_(v)
                named[n].grad = None


# ----------------------------------------------------------------------------- dimensions
@torch.no_grad()
def outlier_dimensions(hm: HubModel, texts: Mapping[str, str], top: int = 3, window: int = 128,
                       tokens: int = 256, batch_size: int = 4) -> tuple[list[int], Tensor]:
    """Hidden dimensions with the largest mean |activation| over the residual stream.

    Mean over block outputs 1..L and all real tokens (BOS included: massive activations sit
    there) of up to ``tokens`` tokens per text. Returns the ``top`` dims and the score ``[d]``.
    """
    d = hm.d_model
    total, count = torch.zeros(d, dtype=torch.float64), 0
    for lang, text in texts.items():
        ws = token_windows(hm, text, window, tokens, name=f"language {lang!r}")
        for i in range(0, len(ws), batch_size):
            batch = hm.collate(ws[i:i + batch_size])
            m = batch.attention_mask.unsqueeze(-1).float()  # [b, s, 1]

            def add(h: Tensor, m=m) -> None:
                nonlocal total
                total += (h.float().abs() * m).sum((0, 1)).double().cpu()

            with hm.hooks({k: add for k in range(1, hm.n_layers + 1)}, stop_after=hm.n_layers):
                hm.forward_batch(batch)
            count += int(batch.attention_mask.sum()) * hm.n_layers
    score = (total / max(count, 1)).float()
    return score.topk(min(top, d)).indices.tolist(), score


def _io_axes(module: nn.Module, p: Tensor) -> tuple[int, int] | None:
    """(input axis, output axis) of a weight matrix, or None if it is not a linear map."""
    if p.ndim != 2:
        return None
    if type(module).__name__ == "Conv1D":  # GPT-2 style: weight [in, out]
        return 0, 1
    if isinstance(module, nn.Linear):
        return 1, 0
    return None


def dimension_mask(hm: HubModel, region: Mask, dim: int, writers: Sequence[str] = WRITERS) -> Mask:
    """The entries of ``region`` that read or write residual dimension ``dim``.

    A matrix that writes into the residual stream (``writers`` patterns: o_proj, down_proj...)
    contributes its output row ``dim``; any other matrix with input size d contributes its
    input column ``dim``. Matrices with neither side of size d contribute nothing.
    """
    d = hm.d_model
    if not 0 <= int(dim) < d:
        raise UserIndexError(f"dimension {dim} out of range for {hm.name} (d_model={d})")
    modules = dict(hm.model.named_modules())
    named = dict(hm.model.named_parameters())

    def keep(name: str, idx: Tensor, shape: tuple[int, ...]) -> Tensor | None:
        axes = _io_axes(modules.get(name.rsplit(".", 1)[0]), named[name])
        if axes is None:
            return None
        axis = axes[1] if any(fnmatch.fnmatchcase(name, w) for w in writers) else axes[0]
        if shape[axis] != d:
            return None
        coord = idx // shape[1] if axis == 0 else idx % shape[1]
        return coord == int(dim)

    return region.restrict(f"{region.name}@dim{dim}", keep)


def scale_by(factor: float) -> Callable[[Tensor], Tensor]:
    """An ``edit`` function multiplying the masked entries by ``factor`` (0 = ablation)."""
    return lambda v: v * factor


# ----------------------------------------------------------------------------- freezing
def continue_pretraining(
    hm: HubModel,
    windows: Sequence[Sequence[int]],
    steps: int,
    lr: float = 1e-4,
    batch_size: int = 4,
    freeze: Mask | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    weight_decay: float = 0.0,
    seed: int = 0,
    progress: bool = False,
) -> list[float]:
    """AdamW on the LM loss for ``steps`` batches of ``windows``; returns the loss per step.

    Trains the parameters ``select_parameters(hm, include, exclude)`` (block matrices by
    default) and nothing else. With ``freeze``, the region's gradients are zeroed (grad *= ~mask)
    and its entries are copied back after every step, so weight decay cannot move them either:
    frozen entries end bit-for-bit unchanged. Changes the model in place: wrap the call in
    ``restoring(hm, names)`` to undo it. Dropout stays off (eval mode) for determinism.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not windows:
        raise ValueError("continue_pretraining: no training windows")
    params = select_parameters(hm, include, exclude)
    frozen: list[tuple[nn.Parameter, Tensor, Tensor]] = []
    if freeze is not None:
        check_fits(hm, freeze)
        named = dict(hm.model.named_parameters())
        for n, idx in freeze.index.items():
            if idx.numel() and n in params:
                frozen.append((named[n], idx, _flat(named[n])[idx].clone()))
    handles = []
    order = list(range(len(windows)))
    rng = _random.Random(seed)
    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=weight_decay)
    losses, pos = [], len(order)
    hm.model.eval()
    try:
        with grad_only(hm, params), torch.enable_grad():
            for p, idx, _ in frozen:  # grad *= ~mask, before AdamW sees it
                handles.append(p.register_hook(lambda g, idx=idx: g.reshape(-1).index_fill(0, idx, 0).view_as(g)))
            for _ in tqdm(range(steps), desc="continued pre-training", disable=not progress, leave=False):
                if pos + batch_size > len(order):
                    rng.shuffle(order)
                    pos = 0
                chunk = [list(windows[i]) for i in order[pos:pos + batch_size]]
                pos += batch_size
                nll, n = batch_nll(hm, chunk)
                loss = nll.sum() / n.sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for p, idx, old in frozen:
                        _flat(p)[idx] = old
                losses.append(float(loss.detach()))
    finally:
        for h in handles:
            h.remove()
        opt.zero_grad(set_to_none=True)
        del opt
    return losses
