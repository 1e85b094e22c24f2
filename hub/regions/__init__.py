"""Linguistic regions (Zhang et al. 2024): score parameters, pick regions, ablate, perturb, freeze.

See :mod:`hub.regions.importance` for the method; this package's public names are re-exported here.
"""
from hub.regions.importance import (CONTROLS, FORMAT, MONO_PREFIX, NONE, WRITERS, Importance, Mask, RegionSet,
                                    ablate, accumulate_importance, build_regions, check_fits, check_k,
                                    continue_pretraining, dimension_mask, edit, grad_only, model_identity, n_of,
                                    outlier_dimensions, restoring, scale_by, select_parameters, topk_index,
                                    weights_checksum)

__all__ = ["CONTROLS", "FORMAT", "MONO_PREFIX", "NONE", "WRITERS", "Importance", "Mask", "RegionSet", "ablate",
           "accumulate_importance", "build_regions", "check_fits", "check_k", "continue_pretraining",
           "dimension_mask", "edit", "grad_only", "model_identity", "n_of", "outlier_dimensions", "restoring",
           "scale_by", "select_parameters", "topk_index", "weights_checksum"]
