"""MLP neurons: firing counts per language, LAPE selection, deactivation, and neuron-set files.

A *neuron* is one channel of the MLP's intermediate activation, read at the output of the
activation function:
- gated MLPs (llama, mistral, qwen2/3, gemma/2/3, olmo2, smollm3): ``mlp.act_fn(gate_proj(x))``,
  which multiplies ``up_proj(x)`` before ``down_proj``;
- phi3: ``mlp.activation_fn(gate)``, the gate half of ``gate_up_proj``;
- gpt2: ``mlp.act(c_fc(x))``.
A neuron *fires* on a token when that output is > 0 (SiLU and GELU are > 0 exactly where their
input is). Zeroing it removes the channel's whole contribution to ``down_proj``.

LAPE (Tang et al. 2024): with p_l the firing probability on language l's tokens, normalise
p over languages and take its entropy; language-specific neurons are the lowest-entropy
fraction whose top probability passes a threshold, each assigned to the languages where its
probability passes that threshold.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from hub.errors import UserError, UserFileError
from hub.models.model import HubModel

_ACT_NAMES = ("act_fn", "activation_fn", "act")


def activation_modules(hm: HubModel) -> list[nn.Module]:
    """The MLP activation-function module of every block, in depth order (see module docstring)."""
    mods = []
    for i, block in enumerate(hm.blocks):
        mlp = getattr(block, "mlp", None)
        act = next((getattr(mlp, n) for n in _ACT_NAMES if isinstance(getattr(mlp, n, None), nn.Module)), None)
        if act is None:
            raise ValueError(f"{hm.name}: block {i} has no dense MLP activation module (looked for mlp.{_ACT_NAMES}); "
                             "expected a dense (non-MoE) MLP family")
        mods.append(act)
    if len({id(m) for m in mods}) != len(mods):
        raise ValueError(f"{hm.name}: blocks share one activation module, so hooks cannot tell layers apart")
    return mods


@torch.no_grad()
def firing_counts(hm: HubModel, windows: Sequence[Sequence[int]], batch_size: int = 4) -> tuple[Tensor, int]:
    """Per layer and neuron, how many real tokens it fired on: ``([L, n_neurons] int64, n_tokens)``.

    One pass; counts only, never stored activations. The forward stops after the last block.
    """
    acts = activation_modules(hm)
    counts: list[Tensor | None] = [None] * len(acts)
    current: dict[str, Tensor] = {}

    def counter(i: int):
        def hook(_mod, _args, out):
            fired = (out > 0) & current["mask"][..., None]  # [b, s, n]
            c = fired.sum((0, 1)).to("cpu", torch.int64)
            counts[i] = c if counts[i] is None else counts[i] + c
        return hook

    handles = [m.register_forward_hook(counter(i)) for i, m in enumerate(acts)]
    n_tokens = 0
    try:
        for s in range(0, len(windows), batch_size):
            batch = hm.collate(windows[s:s + batch_size])
            current["mask"] = batch.attention_mask.bool()
            n_tokens += int(batch.attention_mask.sum())
            with hm.hooks({}, stop_after=hm.n_layers):
                hm.forward_batch(batch)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(counts), n_tokens


def lape_select(probs: Tensor, bottom_fraction: float = 0.01, threshold: float | None = None,
                threshold_quantile: float = 0.95) -> tuple[Tensor, Tensor, float]:
    """Language-specific neurons from firing probabilities ``probs [langs, L, n]``.

    Returns ``(masks [langs, L, n] bool, entropy [L, n], threshold)``. A neuron is selected when
    its entropy is in the lowest ``bottom_fraction`` of all neurons and its top probability
    reaches ``threshold`` (default: the ``threshold_quantile`` of all probabilities, as in Tang
    et al.); it is assigned to every language whose probability reaches the threshold.
    """
    if probs.ndim != 3 or probs.shape[0] < 2:
        raise ValueError(f"lape_select: probs have shape {tuple(probs.shape)}: expected [languages >= 2, L, n]")
    if not 0.0 < bottom_fraction <= 1.0:
        raise ValueError(f"bottom_fraction={bottom_fraction}: expected a fraction in (0, 1]")
    p = probs.double()
    if threshold is None:  # kthvalue, not torch.quantile: quantile refuses inputs over 16M values
        flat = p.flatten()
        threshold = float(flat.kthvalue(max(1, min(flat.numel(), round(threshold_quantile * flat.numel())))).values)
    thr = float(threshold)
    total = p.sum(0)  # [L, n]
    q = p / total.clamp_min(1e-12)
    ent = -(q * q.clamp_min(1e-30).log()).sum(0)  # [L, n]
    ent = torch.where(total > 0, ent, torch.full_like(ent, float("inf")))  # silent neurons are not selected
    n_sel = max(1, round(bottom_fraction * ent.numel()))
    cut = ent.flatten().kthvalue(n_sel).values
    low = (ent <= cut) & (p.max(0).values >= thr)  # [L, n]
    masks = low[None] & (p >= thr)
    return masks, ent.float(), thr


@contextlib.contextmanager
def deactivated(hm: HubModel, mask: Tensor) -> Iterator[None]:
    """Zero the neurons of ``mask [L, n]`` (True = off) in every forward inside the block."""
    acts = activation_modules(hm)
    if mask.ndim != 2 or mask.shape[0] != len(acts):
        raise ValueError(f"deactivated: mask has shape {tuple(mask.shape)}: expected [{len(acts)}, n_neurons]")
    handles = []

    def zero(keep: Tensor):
        def hook(_mod, _args, out):
            return out * keep.to(device=out.device, dtype=out.dtype)
        return hook

    try:
        for i, act in enumerate(acts):
            if mask[i].any():
                handles.append(act.register_forward_hook(zero((~mask[i]).to(torch.float32))))
        yield
    finally:
        for h in handles:
            h.remove()


def save_neurons(path: str | os.PathLike, masks: Mapping[str, Tensor], meta: Mapping[str, str]) -> Path:
    """Neuron sets (name -> ``[L, n]`` bool) as safetensors with string metadata (model, checksum)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({k: v.to(torch.uint8).contiguous() for k, v in masks.items()}, str(tmp),
              metadata={k: str(v) for k, v in meta.items()})
    os.replace(tmp, path)
    return path


def load_neurons(path: str | os.PathLike, expect: Mapping[str, str] | None = None) -> dict[str, Tensor]:
    """Read a neuron-set file; with ``expect``, every given metadata field must match."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise UserFileError(f"neuron file {path} does not exist: expected a neurons.safetensors written by language_neurons")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - a foreign file is a user error, said in one line
        raise UserError(f"neuron file {path} is not a safetensors file ({e})") from None
    for k, v in (expect or {}).items():
        if meta.get(k) != str(v):
            raise UserError(f"neuron file {path} was made for {k}={meta.get(k)!r}, not {v!r}: "
                             "expected neurons selected on this model")
    return {k: v.bool() for k, v in load_file(str(path)).items()}
