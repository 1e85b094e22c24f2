"""Linguistic regions (Zhang et al. 2024): score parameters, pick regions, ablate, perturb, freeze.

Importance of a parameter θ for a language L is the first-order (Taylor) estimate of how much
the language-model loss on L's text changes when θ is zeroed: ``|θ · ∂loss/∂θ|`` (importance.py).
Regions are sets of parameter entries, kept per matrix as sorted flat indices (masks.py):

- ``core``:     the top-k fraction (default 1%) per matrix of importance summed over languages;
- ``mono:<L>``: L's own top-k minus every other language's top-k (disjoint across languages);
- ``bottom``:   the bottom-k per matrix of the summed importance (a control);
- ``random``:   k per matrix drawn uniformly with a fixed seed (a control);
- ``none``:     the empty region (no ablation).

Editing (``ablate``, ``edit``, dimension scaling, freezing during continued pre-training) restores
the edited entries bit-for-bit on exit, also on an exception (edit.py).
"""
from hub.regions.edit import (WRITERS, ablate, continue_pretraining, dimension_mask, edit, outlier_dimensions,
                              restoring, scale_by)
from hub.regions.importance import (Importance, accumulate_importance, grad_only, region_identity,
                                    select_parameters, weights_checksum)
from hub.regions.masks import (CONTROLS, FORMAT, MONO_PREFIX, NONE, Mask, RegionSet, build_regions, check_fits,
                               check_k, n_of, topk_index)

__all__ = ["CONTROLS", "FORMAT", "MONO_PREFIX", "NONE", "WRITERS", "Importance", "Mask", "RegionSet", "ablate",
           "accumulate_importance", "build_regions", "check_fits", "check_k", "continue_pretraining",
           "dimension_mask", "edit", "grad_only", "n_of", "outlier_dimensions", "region_identity", "restoring",
           "scale_by", "select_parameters", "topk_index", "weights_checksum"]
