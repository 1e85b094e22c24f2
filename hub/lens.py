"""The logit lens: read residual states through final norm + unembedding.

All layers of all items go through one stacked matmul ``[items*layers, d] @ W_U^T`` (in row
chunks that bound memory), never one matmul per layer. The final norm is an explicit switch,
on by default (as tuned-lens and Wendler et al.); the semantic-hub paper's code leaves it off
for intermediate layers. Our captured states are raw block outputs, so the norm is applied
exactly once; do not feed HF's last ``hidden_states`` entry (already normed) with norm on.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from hub.model import HubModel


class LogitLens:
    """Project ``[..., d]`` states to ``[..., vocab]`` logits; chunked to cap memory."""

    def __init__(self, hm: HubModel, apply_norm: bool = True, max_chunk_bytes: int = 512 * 2**20):
        self.hm = hm
        self.apply_norm = apply_norm
        self.max_chunk_bytes = max_chunk_bytes
        self._energy_m: Tensor | None = None

    @property
    def weight(self) -> Tensor:
        return self.hm.unembed.weight

    def _rows_per_chunk(self) -> int:
        return max(1, self.max_chunk_bytes // (4 * self.hm.vocab_size))

    @torch.no_grad()
    def normed(self, states: Tensor) -> Tensor:
        """Final norm (if on), in the model's dtype, then fp32. ``[..., d] -> [..., d]``."""
        w = self.weight
        h = states.to(device=w.device, dtype=w.dtype)
        if self.apply_norm:
            h = self.hm.final_norm(h)
        return h

    @torch.no_grad()
    def logits(self, states: Tensor) -> Tensor:
        """``[..., d] -> [..., vocab]`` fp32 logits (softcapped where the config says so)."""
        shape = states.shape[:-1]
        flat = states.reshape(-1, states.shape[-1])
        out = torch.empty(flat.shape[0], self.hm.vocab_size, dtype=torch.float32)
        step = self._rows_per_chunk()
        for i in range(0, flat.shape[0], step):
            out[i:i + step] = self._logits_rows(flat[i:i + step]).cpu()
        return out.reshape(*shape, -1)

    def _logits_rows(self, rows: Tensor) -> Tensor:
        h = self.normed(rows)
        z = self.hm.unembed(h).float() if not isinstance(self.hm.unembed, torch.nn.Linear) \
            else torch.nn.functional.linear(h, self.weight, getattr(self.hm.unembed, "bias", None)).float()
        cap = self.hm.softcap
        if cap:
            z = torch.tanh(z / cap) * cap
        return z

    @torch.no_grad()
    def reduce(self, states: Tensor, token_sets: Sequence[Sequence[Sequence[int]]] | None = None,
               top_k: int = 0) -> dict[str, Tensor]:
        """Per state: entropy (bits), optional summed probability of token sets, top-k tokens.

        ``states``: ``[n, layer, d]``; ``token_sets``: per item a list of sets, e.g.
        ``[[target_ids, english_ids], ...]``. Returns ``entropy [n, layer]``, ``set_prob
        [n, layer, sets]``, ``top_ids``/``top_probs`` ``[n, layer, k]``. Chunked; full
        probability tensors are never kept.
        """
        n, L, d = states.shape
        flat = states.reshape(n * L, d)
        step = self._rows_per_chunk()
        ent = torch.empty(n * L)
        n_sets = len(token_sets[0]) if token_sets else 0
        if n_sets:
            if len(token_sets) != n:
                raise ValueError(f"token_sets: got {len(token_sets)} items for {n} states")
            V = self.hm.vocab_size
            per_item = []  # per item: (token ids, set index) as flat tensors
            for it, sets in enumerate(token_sets):
                if len(sets) != n_sets:
                    raise ValueError(f"token_sets[{it}] has {len(sets)} sets, expected {n_sets}")
                toks = [int(t) for ids in sets for t in ids]
                bad = [t for t in toks if not 0 <= t < V]
                if bad:
                    raise ValueError(f"token_sets[{it}]: ids {bad[:5]} outside the vocabulary 0..{V - 1}")
                per_item.append((torch.tensor(toks, dtype=torch.long),
                                 torch.tensor([s for s, ids in enumerate(sets) for _ in ids], dtype=torch.long)))

            def gather_plan(rows: Tensor, L: int):
                r, t, s = [], [], []
                for j, row in enumerate(rows.tolist()):
                    toks, sets_ = per_item[row // L]
                    r.append(torch.full_like(toks, j))
                    t.append(toks)
                    s.append(sets_)
                return torch.cat(r), torch.cat(t), torch.cat(s)
        set_prob = torch.zeros(n * L, n_sets)
        top_ids = torch.zeros(n * L, top_k, dtype=torch.long)
        top_p = torch.zeros(n * L, top_k)
        for i in range(0, n * L, step):
            z = self._logits_rows(flat[i:i + step])  # [rows, V]
            z.sub_(z.amax(-1, keepdim=True))  # in place: shifted logits z'
            e = torch.exp(z)
            S = e.sum(-1, keepdim=True)
            # entropy = log S - sum(e z') / S, in nats -> bits; no V-wide log-prob tensor is formed
            ent[i:i + step] = ((S.log().squeeze(-1) - torch.linalg.vecdot(e, z) / S.squeeze(-1)) / math.log(2)).cpu()
            p = e.div_(S)
            if top_k:
                tp, ti = p.topk(top_k, dim=-1)
                top_ids[i:i + step], top_p[i:i + step] = ti.cpu(), tp.cpu()
            if n_sets:
                rows = torch.arange(i, min(i + step, n * L))
                r_idx, t_idx, s_idx = gather_plan(rows, L)
                acc = torch.zeros(len(rows), n_sets, dtype=p.dtype, device=p.device)
                acc.index_put_((r_idx, s_idx), p[r_idx, t_idx], accumulate=True)
                set_prob[i:i + step] = acc.cpu()
        out = {"entropy": ent.reshape(n, L)}
        if n_sets:
            out["set_prob"] = set_prob.reshape(n, L, n_sets)
        if top_k:
            out["top_ids"], out["top_probs"] = top_ids.reshape(n, L, top_k), top_p.reshape(n, L, top_k)
        return out

    # ----------------------------------------------------------- token energy
    def _gain(self) -> Tensor:
        """Effective elementwise gain g of the final norm (handles Gemma's 1 + w)."""
        norm = self.hm.final_norm
        if isinstance(norm, torch.nn.LayerNorm):
            return norm.weight.detach().float()
        ones = torch.ones(1, self.hm.d_model, dtype=self.weight.dtype, device=self.weight.device)
        with torch.no_grad():
            return norm(ones)[0].float()

    @torch.no_grad()
    def token_energy(self, states: Tensor) -> Tensor:
        """Wendler et al.'s token energy of ``[..., d]`` states -> ``[...]``.

        With U the rows of W_U·diag(g) at unit length and h the unit state:
        sqrt(mean_v (U_v·h)^2) / sqrt(sum_ij ((U U^T)_ij)^2 / V^2), computed through the
        d×d matrix M = U^T U, so no V×V or V-wide product per state is needed.
        """
        if self._energy_m is None:
            U = self.weight.detach().float() * self._gain()[None, :]
            U = U / U.norm(dim=1, keepdim=True).clamp_min(1e-12)
            M = U.T @ U  # [d, d]
            V = U.shape[0]
            self._energy_m = (M / V, M.norm() / V)
        Mv, denom = self._energy_m
        h = states.float().to(Mv.device)
        h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        num = torch.einsum("...i,ij,...j->...", h, Mv, h).clamp_min(0).sqrt()
        return (num / denom).cpu()
