"""Token energy (Wendler et al. 2024): how much of a state lies where the unembedding reads.

With U the rows of W_U·diag(g) at unit length (g the final norm's effective gain) and h the
unit state: energy = sqrt(mean_v (U_v·h)^2) / sqrt(sum_ij ((U U^T)_ij)^2 / V^2), computed
through the d×d matrix M = U^T U, so no V×V or V-wide product per state is needed.
"""
from __future__ import annotations

import torch
from torch import Tensor

from hub.models import HubModel


class TokenEnergy:
    """Token energy of ``[..., d]`` states of one model; M is built once, on first use."""

    def __init__(self, hm: HubModel) -> None:
        self.hm = hm
        self._m: tuple[Tensor, Tensor] | None = None

    def _gain(self) -> Tensor:
        """Effective elementwise gain g of the final norm (handles Gemma's 1 + w)."""
        norm, w = self.hm.final_norm, self.hm.unembed.weight
        if isinstance(norm, torch.nn.LayerNorm):
            return norm.weight.detach().float()
        ones = torch.ones(1, self.hm.d_model, dtype=w.dtype, device=w.device)
        with torch.no_grad():
            return norm(ones)[0].float()

    @torch.no_grad()
    def __call__(self, states: Tensor) -> Tensor:
        """``[..., d] -> [...]`` fp32 (on the CPU)."""
        if self._m is None:
            U = self.hm.unembed.weight.detach().float() * self._gain()[None, :]
            U = U / U.norm(dim=1, keepdim=True).clamp_min(1e-12)
            M = U.T @ U  # [d, d]
            V = U.shape[0]
            self._m = (M / V, M.norm() / V)
        Mv, denom = self._m
        h = states.float().to(Mv.device)
        h = h / h.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        num = torch.einsum("...i,ij,...j->...", h, Mv, h).clamp_min(0).sqrt()
        return (num / denom).cpu()
