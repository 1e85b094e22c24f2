"""The metric registry: every comparator metric declares itself here, in one place.

A :class:`Metric` says what a metric is (name, one-line definition, family), what a reader
needs to judge a value (its chance level / baseline, its bounds, the transformations it is
invariant to) and what the fused evaluation must provide for it (``needs``). The engine
(:mod:`hub.metrics.engine`) computes the shared quantities once per chunk of layers and
calls each requested metric's ``evaluate`` with them, so a new metric reuses the Grams the
others already paid for.

Adding a metric = one file that calls :func:`register` (imported in ``hub/metrics/__init__``)
plus one test of its invariances and of a known value; see README "Adding a metric".
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # pragma: no cover
    from hub.metrics.shared import Chunk, Part

# Vocabulary of declared invariances (each one is tested for every metric that declares it):
INVARIANCES: dict[str, str] = {
    "orthogonal": "x -> x Q and y -> y Q for one orthogonal Q (a rotation of a shared space)",
    "orthogonal_each": "x -> x Q, y -> y R for unrelated orthogonal Q, R (each side on its own)",
    "isotropic_scale": "x -> s x for a scalar s > 0 (on either side)",
    "translation": "x -> x + t for a vector t shared by all items (on either side)",
    "item_scale": "x_i -> s_i x_i for per-item scalars s_i > 0",
    "item_permutation": "the same permutation of the items applied to x and y",
}
# Shared quantities the engine can provide per chunk of layers (see hub.metrics.shared.Chunk):
NEEDS = frozenset({"unit", "gram", "knn", "cos_gram", "cross"})


@dataclass(frozen=True)
class Metric:
    """One comparator metric.

    Attributes:
        name: the ``metric`` column value.
        family: where its code lives (cosine, cka, neighbours, ...).
        definition: one line, with the reference.
        baseline: what the ``baseline`` column holds, in words.
        chance: analytic chance level ``(n, k) -> float`` when it is a constant; ``None``
            when the metric computes a data-dependent baseline itself (``Part.baseline``) or
            has none (``null_baseline``).
        null_baseline: no analytic baseline: the ``baseline`` column is the mean score over
            ``n_perm`` item permutations of y (computed even with ``baseline="analytic"``).
        bounds: (low, high) of possible values; CIs are clipped to them.
        invariances: keys of :data:`INVARIANCES` the metric is invariant to.
        same_width: x and y must have the same width d (the metric compares them directly).
        min_n: fewest items for which it is defined.
        uses_k: it uses the ``k`` neighbours option (so k < n is checked).
        needs: shared quantities from :data:`NEEDS`.
        evaluate: ``(chunk) -> Part`` for a chunk of layers.
        ci: ``percentile`` (bootstrap of per-item scores, ``n_boot`` resamples) or ``normal``
            (value +/- z SE over ``n_boot_cka`` exact recomputations on resampled items).
        default: part of :data:`METRICS` (computed when no metric is named).
        label: a short title for figures (e.g. "linear CKA (biased HSIC)"); required.
        undefined: when the metric has no value (its ``evaluate`` then returns NaN at those
            layers; the engine raises or, with ``undefined="nan"``, keeps the NaN), in words.
    """

    name: str
    family: str
    definition: str
    baseline: str
    chance: Callable[[int, int], float] | None
    bounds: tuple[float, float]
    invariances: frozenset[str]
    evaluate: Callable[[Chunk], Part]
    needs: frozenset[str] = frozenset()
    same_width: bool = False
    min_n: int = 2
    uses_k: bool = False
    ci: Literal["percentile", "normal"] = "percentile"
    default: bool = False
    null_baseline: bool = False
    undefined: str = "no finite value"
    label: str = ""

    def __post_init__(self) -> None:
        bad = sorted(set(self.invariances) - set(INVARIANCES))
        if bad:
            raise ValueError(f"metric {self.name}: unknown invariances {bad}; expected from {sorted(INVARIANCES)}")
        bad = sorted(set(self.needs) - NEEDS)
        if bad:
            raise ValueError(f"metric {self.name}: unknown needs {bad}; expected from {sorted(NEEDS)}")
        lo, hi = self.bounds
        if not lo < hi or math.isnan(lo) or math.isnan(hi):
            raise ValueError(f"metric {self.name}: bounds must be (low, high) with low < high; got {self.bounds}")
        if not self.label.strip():
            raise ValueError(f"metric {self.name}: label must be a short figure title, e.g. 'linear CKA (biased HSIC)'")


REGISTRY: dict[str, Metric] = {}


def register(metric: Metric) -> Metric:
    """Add ``metric`` to :data:`REGISTRY` (a name may be registered once)."""
    if metric.name in REGISTRY:
        raise ValueError(f"metric {metric.name!r} is already registered (by family {REGISTRY[metric.name].family})")
    REGISTRY[metric.name] = metric
    return metric


def names(default_only: bool = False) -> tuple[str, ...]:
    """Registered metric names in registration order (the defaults first)."""
    d = tuple(m for m, s in REGISTRY.items() if s.default)
    return d if default_only else d + tuple(m for m, s in REGISTRY.items() if not s.default)


def label(name: str) -> str:
    """Figure title of metric ``name``: its registered label, or the name itself for rows that
    are not comparator metrics (e.g. an experiment's own contrasts)."""
    m = REGISTRY.get(name)
    return m.label if m is not None else name


def width_free(default_only: bool = False) -> tuple[str, ...]:
    """Registered metrics that compare x and y of different widths (not ``same_width``)."""
    return tuple(m for m in names(default_only) if not REGISTRY[m].same_width)


def stage(metric: Metric) -> int:
    """Evaluation order within a chunk: centred-Gram users before the Grams are turned into
    cosine Grams in place (k-NN), cross-similarity users last (after the Grams are freed)."""
    if "gram" in metric.needs:
        return 0
    if metric.needs & {"knn", "cos_gram"}:
        return 1
    return 2
