"""Lenses: read a residual state at layer k as a next-token distribution.

- ``base``: the :class:`Lens` interface (one method, ``transform``) and the streamed readout
  every lens shares (final norm + unembedding in vocabulary blocks: token-set probabilities,
  entropy, top-k, log p(target), token energy); the lens registry.
- ``logit``: :class:`LogitLens` (the identity transform).
- ``patchscope``: :class:`PatchscopeLens` (the state patched into an identity prompt at layer
  k', read by the model's own next-token distribution; Ghandeharioun et al. 2024).
- ``tuned``: :class:`TunedLens` (one affine translator per layer, ``h + A_k h + b_k``; Belrose
  et al. 2023), its file formats (ours and the tuned-lens library's); ``tuning``: its training
  objective (full or bounded-vocabulary KL) and the held-out full-vocabulary KL.
- ``energy``: Wendler et al.'s token energy.
- ``tokensets``: the token ids that spell a word (every prefix, with/without the boundary).
- ``readout``: the latent-language readout over prompts (per-layer p(set), entropy, energy).

A new lens (tuned, patchscope) is one class: subclass :class:`Lens`, implement
``transform``, decorate with ``@register_lens("name")``.
"""
from hub.lens.base import LENSES, Lens, make_lens, register_lens
from hub.lens.logit import LogitLens
from hub.lens.patchscope import PatchscopeLens
from hub.lens.tuned import TunedLens

__all__ = ["LENSES", "Lens", "LogitLens", "PatchscopeLens", "TunedLens", "make_lens", "register_lens"]
