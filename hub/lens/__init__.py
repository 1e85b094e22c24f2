"""Lenses: read a residual state at layer k as a next-token distribution.

- ``base``: the :class:`Lens` interface (one method, ``transform``) and the streamed readout
  every lens shares (final norm + unembedding in vocabulary blocks: token-set probabilities,
  entropy, top-k, log p(target), token energy); the lens registry.
- ``logit``: :class:`LogitLens` (the identity transform).
- ``energy``: Wendler et al.'s token energy.
- ``tokensets``: the token ids that spell a word (every prefix, with/without the boundary).
- ``readout``: the latent-language readout over prompts (per-layer p(set), entropy, energy).

A new lens (tuned, patchscope) is one class: subclass :class:`Lens`, implement
``transform``, decorate with ``@register_lens("name")``.
"""
from hub.lens.base import LENSES, Lens, make_lens, register_lens
from hub.lens.logit import LogitLens

__all__ = ["LENSES", "Lens", "LogitLens", "make_lens", "register_lens"]
