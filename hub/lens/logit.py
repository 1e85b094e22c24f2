"""The logit lens (nostalgebraist 2020): a state at any layer read as if it were the last."""
from __future__ import annotations

from torch import Tensor

from hub.lens.base import LayerSpec, Lens, register_lens


@register_lens("logit")
class LogitLens(Lens):
    """Final norm (``apply_norm``) + unembedding of the state itself: ``transform`` is the identity.

    ``LogitLens(hm).logits(states)`` maps ``[..., d]`` to ``[..., vocab]``; ``reduce`` streams
    token-set probabilities, entropy and top-k over ``[n, layer, d]`` (hub.lens.base).
    On a bf16/fp16 model the final norm runs in the model's dtype on the unembedding's device,
    its output is upcast to fp32 and the unembedding matmul runs in fp32 (weight blocks upcast
    one vocabulary block at a time): the logits are fp32 (``Lens.normed``, ``_logit_blocks``).
    """

    def transform(self, states: Tensor, layers: LayerSpec = None) -> Tensor:
        return states
