"""Training a tuned lens: KL(final || lens_k) per layer, full or over a bounded vocabulary.

Objective (Belrose et al. 2023): for every token and layer k, KL(p || q_k) where p is the
model's final next-token distribution and q_k the tuned lens's reading of the layer-k state;
summed over layers, averaged over tokens. Translators of different layers are independent, so
the loss is computed (and back-propagated) one chunk of layers at a time; the final norm and
unembedding stay frozen.

Bounded objective (``top_k > 0``; on CPUs a full-vocabulary KL over Gemma's 262k tokens costs
``tokens x layers x d x V`` twice per step). p is cut to each token's ``top_k`` final tokens
plus one remainder bucket holding the rest of its mass (exact: the final distribution is
computed once per token, streamed). The lens's log-probabilities need its partition function
over the whole vocabulary; it is stratified: exact over a shared set U (the batch's top-k ids
and its input tokens, where the mass is), estimated over the tail V \\ U from ``negatives``
uniform samples drawn afresh each step (sum over the tail ~ |V \\ U| x the mean of the sampled
exp-logits). The lens's remainder bucket is U minus the token's own top-k, plus the tail.
``top_k = 0`` is the exact full-vocabulary KL. :func:`held_out_kl` always measures the full
KL, so the two objectives are judged by the same number.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hub.lens.logit import LogitLens
from hub.lens.tuned import TunedLens


@dataclass
class FitConfig:
    """Optimiser and objective settings (conf/experiment/train_tuned_lens.yaml ``fit``)."""

    steps: int = 200
    batch_tokens: int = 256
    optimizer: str = "adam"  # adam | sgd (Nesterov momentum, as tuned-lens)
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    warmup_fraction: float = 0.1  # linear warm-up, then linear decay to 0 (tuned-lens's schedule)
    top_k: int = 64  # 0: the full-vocabulary objective
    negatives: int = 2048  # uniform tail samples per step (bounded objective)
    layers_per_chunk: int = 4
    seed: int = 0


@dataclass
class Targets:
    """The final distribution per token: bounded (``top_ids``/``top_logp`` ``[N, k]``, ``rest_logp``
    ``[N]``) and/or the raw last-layer states ``final [N, d]`` (full objective recomputes it)."""

    final: Tensor
    top_ids: Tensor | None = None
    top_logp: Tensor | None = None
    rest_logp: Tensor | None = None


@torch.no_grad()
def final_targets(hm, final: Tensor, top_k: int) -> Targets:
    """Top-k of the final distribution of raw last-layer states ``final [N, d]`` (streamed)."""
    if top_k <= 0:
        return Targets(final=final)
    red = LogitLens(hm).reduce(final[:, None, :], top_k=top_k)
    p = red["top_probs"][:, 0]  # [N, k]
    rest = (1.0 - p.sum(-1)).clamp(min=0.0)
    return Targets(final=final, top_ids=red["top_ids"][:, 0], top_logp=p.clamp(min=1e-30).log(),
                   rest_logp=torch.where(rest > 0, rest.clamp(min=1e-30).log(), torch.full_like(rest, -math.inf)))


def _frozen_norm(lens: TunedLens, h: Tensor) -> Tensor:
    """Final norm (if on) with gradients to ``h`` only, fp32."""
    norm = lens.hm.final_norm
    flags = [(p, p.requires_grad) for p in norm.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        return (norm(h.to(lens.hm.dtype)) if lens.apply_norm else h).float()
    finally:
        for p, f in flags:
            p.requires_grad_(f)


def _cap(lens: TunedLens, z: Tensor) -> Tensor:
    cap = lens.hm.softcap
    return cap * torch.tanh(z / cap) if cap else z


def _unembed_cols(lens: TunedLens, h: Tensor, ids: Tensor | None) -> Tensor:
    """Logits of normed ``h [..., d]`` at vocabulary ``ids [u]`` (all when None) -> ``[..., u]``."""
    W = lens.weight.detach().float()
    bias = getattr(lens.hm.unembed, "bias", None)
    if ids is not None:
        W = W[ids]
        bias = None if bias is None else bias[ids]
    z = h @ W.T
    if bias is not None:
        z = z + bias.detach().float()
    return _cap(lens, z)


def _kl_bounded(lens: TunedLens, hq: Tensor, tg: Targets, rows: Tensor, input_ids: Tensor, n_neg: int,
                gen: torch.Generator) -> Tensor:
    """Summed-over-layers, mean-over-tokens bounded KL; ``hq [b, layer, d]`` normed lens states."""
    V = lens.hm.vocab_size
    top = tg.top_ids[rows]  # [b, k]
    U = torch.unique(torch.cat([top.flatten(), input_ids.flatten()]))  # sorted [u]
    pos = torch.searchsorted(U, top)  # [b, k] positions of each token's top-k in U
    zU = _unembed_cols(lens, hq, U)  # [b, layer, u]
    b, nl, u = zU.shape
    mine = torch.zeros(b, u, dtype=torch.bool).scatter_(1, pos, True)[:, None, :]  # [b, 1, u]
    parts_rest = [zU.masked_fill(mine, -math.inf).logsumexp(-1)]  # [b, layer]
    parts_all = [zU.logsumexp(-1)]
    n_tail = V - u
    if n_tail > 0 and n_neg > 0:
        R = torch.randint(V, (n_neg,), generator=gen)
        R = R[~torch.isin(R, U)]
        if len(R):
            tail = _unembed_cols(lens, hq, R).logsumexp(-1) + math.log(n_tail / len(R))  # [b, layer]
            parts_rest.append(tail)
            parts_all.append(tail)
    log_rest = torch.stack(parts_rest).logsumexp(0)
    logZ = torch.stack(parts_all).logsumexp(0)
    logq_top = zU.gather(2, pos[:, None, :].expand(b, nl, -1)) - logZ[..., None]  # [b, layer, k]
    logq_rest = log_rest - logZ
    lp, lr = tg.top_logp[rows][:, None, :], tg.rest_logp[rows][:, None]
    kl = (lp.exp() * (lp - logq_top)).sum(-1)
    pr = lr.exp()
    kl = kl + torch.where(pr > 0, pr * (lr - logq_rest), torch.zeros_like(kl))
    return kl.sum(1).mean()


def _kl_full(lens: TunedLens, hq: Tensor, logp: Tensor) -> Tensor:
    """Exact KL summed over layers, mean over tokens; ``logp [b, V]`` final log-probs."""
    logq = _unembed_cols(lens, hq, None).log_softmax(-1)  # [b, layer, V]
    return (logp.exp()[:, None, :] * (logp[:, None, :] - logq)).sum(-1).sum(1).mean()


def fit(lens: TunedLens, states: Tensor, layers: list[int], targets: Targets, cfg: FitConfig,
        input_ids: Tensor | None = None, log_every: int = 0) -> list[float]:
    """Train ``lens``'s translators in place on ``states [N, layer, d]`` (at ``layers``, each < L).

    ``targets`` from :func:`final_targets` (``cfg.top_k`` must match); ``input_ids [N]``: the
    token at each position (joins the bounded objective's exact set). Returns the loss per step.
    """
    if cfg.top_k > 0 and targets.top_ids is None:
        raise ValueError("bounded objective (top_k > 0) needs targets from final_targets(..., top_k)")
    N = states.shape[0]
    gen = torch.Generator().manual_seed(int(cfg.seed))
    tr = lens.translators
    tr.requires_grad_(True)
    params = list(tr.parameters())
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, weight_decay=cfg.weight_decay)
    else:
        raise ValueError(f"fit.optimizer={cfg.optimizer!r}: expected adam or sgd")
    warm = max(1, int(cfg.warmup_fraction * cfg.steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (cfg.steps - s) / max(1, cfg.steps - warm))))
    step_l = max(1, int(cfg.layers_per_chunk))
    chunks = [list(range(i, min(i + step_l, len(layers)))) for i in range(0, len(layers), step_l)]
    losses, perm, at = [], torch.randperm(N, generator=gen), 0
    t0 = time.time()
    try:
        for step in range(cfg.steps):
            if at + cfg.batch_tokens > N:
                perm, at = torch.randperm(N, generator=gen), 0
            rows = perm[at:at + cfg.batch_tokens]
            at += cfg.batch_tokens
            opt.zero_grad(set_to_none=True)
            logp = None
            if cfg.top_k <= 0:
                with torch.no_grad():
                    logp = _unembed_cols(lens, _frozen_norm(lens, targets.final[rows]), None).log_softmax(-1)
            total = 0.0
            for ch in chunks:
                lay = [layers[j] for j in ch]
                hq = _frozen_norm(lens, tr(states[rows][:, ch], lay))  # [b, chunk, d]
                if cfg.top_k > 0:
                    ids = input_ids[rows] if input_ids is not None else torch.empty(0, dtype=torch.long)
                    loss = _kl_bounded(lens, hq, targets, rows, ids, cfg.negatives, gen)
                else:
                    loss = _kl_full(lens, hq, logp)
                loss.backward()
                total += float(loss.detach())
            opt.step()
            sched.step()
            losses.append(total)
            if log_every and (step % log_every == 0 or step == cfg.steps - 1):
                print(f"step {step}/{cfg.steps} loss {total:.4f} ({time.time() - t0:.0f} s)", flush=True)
    finally:
        tr.requires_grad_(False)
    return losses


@torch.no_grad()
def held_out_kl(lens, states: Tensor, layers: list[int], final: Tensor, rows_per_chunk: int = 32) -> np.ndarray:
    """Full-vocabulary KL(final || lens) in nats per token and layer: ``[N, layer]``.

    ``states [N, layer, d]`` at ``layers``; ``final [N, d]`` raw last-layer states. Any lens
    (the logit lens, a tuned lens) through its own ``logits``.
    """
    ref = LogitLens(lens.hm, apply_norm=lens.apply_norm)
    out = np.zeros((states.shape[0], len(layers)))
    for i in range(0, states.shape[0], rows_per_chunk):
        logp = ref.logits(final[i:i + rows_per_chunk]).log_softmax(-1)  # [c, V]
        p = logp.exp()
        for j, k in enumerate(layers):
            logq = lens.logits(states[i:i + rows_per_chunk, j:j + 1], layers=[k])[:, 0].log_softmax(-1)
            out[i:i + rows_per_chunk, j] = (p * (logp - logq)).sum(-1).clamp(min=0).numpy()
    return out
