"""Activation cache: a rerun that reads cached states vs the original run that computed them.

Workload: the capture stage of ``experiment=crosslingual`` on Gemma-3-270m (both sides of every
paired set of the text adapter, all layers, last position; ``--items`` items per set), run
  1. without a cache (the plain cost),
  2. with an empty cache (compute + write: the original run),
  3. again with the now warm cache (read: a rerun that changes only metrics or plots).
Target: warm / cold <= 0.05. Also a whole job (``experiment=latent_language``) run twice with a
fresh cache directory: the rerun still computes the lens readout, metrics, figures and report,
so that ratio is reported without a target.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_libraries import PeakRSS  # noqa: E402
from benchmarks.common import print_table  # noqa: E402


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    import hub.cli

    with initialize_config_dir(config_dir=str(hub.cli.CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def capture_stage(hm, adapter, batch_size: int) -> list[torch.Tensor]:
    """Every distinct side of the adapter's paired sets, captured as the similarity experiment does."""
    from hub.pairs import capture_side

    seen: dict = {}
    out = []
    for pset in adapter.pairs(hm):
        for side in (pset.a, pset.b):
            out.append(capture_side(hm, side, "all", batch_size, cache=seen))
    return out


def timed(fn) -> tuple[float, float, object]:
    with PeakRSS() as m:
        t = time.perf_counter()
        res = fn()
        dt = time.perf_counter() - t
    return dt, m.peak_mb, res


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma3_270m")
    ap.add_argument("--items", type=int, default=32, help="items per paired set (modality.max_items)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--no-job", action="store_true", help="skip the whole-job rerun rows")
    args = ap.parse_args(argv)
    from hydra.utils import instantiate

    from hub.cache import ActivationCache
    from hub.cli import run_job
    from hub.context import get_model

    cfg = _compose([f"model={args.model}", "experiment=crosslingual", f"modality.max_items={args.items}",
                    "progress=false"])
    hm = get_model(cfg.model)
    adapter = instantiate(cfg.modality)
    n = sum(len(s.inputs) for p in adapter.pairs(hm) for s in (p.a, p.b))
    hm.cache = None
    first = next(iter(adapter.pairs(hm)))
    hm.capture(first.a.inputs[:4], layers="all")  # warm-up: weights paged in, kernels and tokenizer ready
    with tempfile.TemporaryDirectory() as d:
        t_plain, m_plain, _ = timed(lambda: capture_stage(hm, adapter, args.batch))
        hm.cache = ActivationCache(Path(d) / "acts")
        t_cold, m_cold, cold = timed(lambda: capture_stage(hm, adapter, args.batch))
        t_warm, m_warm, warm = timed(lambda: capture_stage(hm, adapter, args.batch))
        stats, size = str(hm.cache.stats), hm.cache.size_bytes() / 2**20
        hm.cache = None
    same = all(torch.equal(a, b) for a, b in zip(cold, warm))
    what = f"{args.model} crosslingual capture stage ({n} inputs)"
    rows = [
        {"what": f"{what}: no cache", "seconds": t_plain, "peak_mb": m_plain},
        {"what": f"{what}: cold cache (compute + write)", "seconds": t_cold, "ref_seconds": t_plain,
         "ratio": t_cold / t_plain, "vs": "no cache", "peak_mb": m_cold, "note": f"{size:.0f} MB written"},
        {"what": f"{what}: warm cache (read)", "seconds": t_warm, "ref_seconds": t_cold, "ratio": t_warm / t_cold,
         "vs": "cold", "target": "<= 0.05", "ok": t_warm / t_cold <= 0.05 and same, "peak_mb": m_warm,
         "note": f"identical: {same}; {stats}"},
    ]
    if not args.no_job:
        with tempfile.TemporaryDirectory() as d:
            ov = [f"model={args.model}", "experiment=latent_language", "progress=false", f"cache.dir={d}/acts",
                  "cache.enabled=true"]
            t1, m1, _ = timed(lambda: run_job(_compose(ov), Path(d) / "a"))
            t2, m2, _ = timed(lambda: run_job(_compose(ov + ["lens_norm=false"]), Path(d) / "b"))
        rows += [
            {"what": f"{args.model} job latent_language: original (cold cache)", "seconds": t1, "peak_mb": m1},
            {"what": f"{args.model} job latent_language: rerun, lens_norm changed", "seconds": t2, "ref_seconds": t1,
             "ratio": t2 / t1, "vs": "original", "peak_mb": m2, "note": "readout, metrics, figures recomputed"},
        ]
    print_table("activation cache: rerun vs original", rows)
    return rows


if __name__ == "__main__":
    main()
