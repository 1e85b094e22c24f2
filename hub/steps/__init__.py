"""Experiment steps shared by several experiments: each runs on a RunContext, adds result rows
and writes its report section. Experiments compose them and import no other experiment.

- ``similarity``: every paired set of an adapter through the one paired path (hub.pairs).
- ``lenses``: the ``lens=`` group in an experiment: configured lenses (with per-experiment
  refusals), one readout per lens with rows tagged ``lens``, figure series and readings per lens.
- ``lens_sets``: lens probabilities of named token sets at the last token of prompts.
- ``latent``: the Wendler et al. latent-language readout of one task (translation, ...).
- ``steering``: layers from a config (fractions of depth), per-unit bootstrap summaries,
  effect-vs-scale figures and readings of the steering experiments.
- ``regions``: text per language split into scoring and held-out parts, regions scored or
  loaded, perplexity rows of the linguistic-region experiments.
"""
