"""The comparator: per-layer similarity of paired hidden states, with baselines and CIs.

Layout (one job per file):
  registry.py    each metric's name, definition, baseline, bounds, invariances, needs
  inputs.py      validation and preprocessing (clamping, centring, unit rows)
  shared.py      a chunk of layers and what metrics share: Grams, k-NN, cross cosine
  engine.py      the fused evaluation over chunks of layers
  resampling.py  bootstrap weights, permutations, intervals
  api.py         compare(), permutation nulls, one-metric helpers
  cosine.py, hsic.py (CKA), neighbours.py (mknn), retrieval.py   the built-in families
  cknna.py, procrustes.py, rsa.py                                 metrics added as plug-ins
Importing this package registers every metric (the import order fixes the table's order).
"""
from hub.metrics import cosine, hsic, neighbours, retrieval  # noqa: F401  (register; defaults first)
from hub.metrics import cknna, procrustes, rsa  # noqa: F401  (register)
from hub.metrics.api import (
    ALL_METRICS,
    COLUMNS,
    EXTRA_METRICS,
    METRICS,
    MaxOverLayersNull,
    cka,
    cka_debiased,
    compare,
    cos_adjusted,
    cos_centered,
    cos_paired,
    cos_unpaired,
    max_over_layers_null,
    mknn,
    permutation_null,
    retrieval_top1,
)
from hub.metrics.inputs import clamp_outliers, preprocess
from hub.metrics.registry import INVARIANCES, REGISTRY, Metric, register

__all__ = [
    "METRICS", "EXTRA_METRICS", "ALL_METRICS", "COLUMNS", "REGISTRY", "INVARIANCES", "Metric", "register",
    "compare", "permutation_null", "max_over_layers_null", "MaxOverLayersNull", "preprocess", "clamp_outliers",
    "cos_paired", "cos_unpaired", "cos_adjusted", "cos_centered", "cka", "cka_debiased", "mknn", "retrieval_top1",
]
