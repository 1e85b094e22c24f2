"""Figure labels and the width-free metric set come from the registry, not from tables kept by hand.

Before, ``hub/steps/similarity.py`` kept a label table (METRIC_LABELS) for the six defaults and
``experiments/clip_similarity.py`` kept its own tower list (TOWER_METRICS). The newer metrics
(cknna, procrustes, rsa, ...) were missing from both.
"""
from __future__ import annotations

import pytest
import torch

import hub.metrics as hm
import hub.steps.similarity as sim
from hub.metrics.registry import REGISTRY, label, width_free
from tests.helpers import run_cfg


def test_every_registered_metric_has_its_own_label():
    labels = {name: spec.label for name, spec in REGISTRY.items()}
    assert all(v.strip() and v != k for k, v in labels.items()), labels
    assert len(set(labels.values())) == len(labels)  # no two metrics share a title
    assert label("cka") == "linear CKA (biased HSIC)" and label("prefer_first") == "prefer_first"
    with pytest.raises(ValueError, match="label must be a short figure title"):
        hm.Metric("x", "f", "d", "b", None, (0.0, 1.0), frozenset(), REGISTRY["rsa"].evaluate)


def test_width_free_metrics_accept_different_widths():
    free = width_free()
    assert {"cka", "cka_debiased", "mknn", "cknna", "procrustes", "rsa"} <= set(free)
    assert width_free(default_only=True) == ("cka", "cka_debiased", "mknn")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 40, 20, generator=g)
    y = x[..., :8] + 0.3 * torch.randn(2, 40, 8, generator=g)
    df = hm.compare(x, y, metrics=free, k=5, n_boot=0)
    assert set(df.metric) == set(free) and df.value.notna().all()


def test_every_registered_metric_plots_with_its_label(tmp_path, monkeypatch):
    """A similarity run with every registered metric draws one figure per metric, titled by its label."""
    titles = {}
    real = sim.layer_curves

    def spy(df, path, **kw):
        titles[df["metric"].iloc[0]] = kw["title"]
        return real(df, path, **kw)

    monkeypatch.setattr(sim, "layer_curves", spy)
    names = ",".join(REGISTRY)
    run_cfg(["experiment=similarity", "model=tiny_llama", "modality.max_items=12", "cache.enabled=false",
             f"metric.names=[{names}]", "metric.k=5", "metric.n_boot=10", "modality.units=[words]"], tmp_path)
    assert titles == {name: spec.label for name, spec in REGISTRY.items()}
    for name in REGISTRY:
        assert (tmp_path / f"similarity_{name}.png").stat().st_size > 1000
