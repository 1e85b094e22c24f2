"""Half-precision capture speed: bf16 (and fp16) vs fp32 capture of all layers on one device.

Same model, batch and layers, measured in one run; the ratio is fp32 seconds / half seconds
(> 1: half precision is faster). On CPUs without native bf16 matmuls expect a ratio below 1.
"""
from __future__ import annotations

import argparse

import torch

from benchmarks.common import best_of, peak_rss_mb, print_table


def dtype_rows(model: str, batch: int, tokens: int, repeats: int, device: str = "cpu",
               dtypes: tuple[str, ...] = ("float32", "bfloat16")) -> list[dict]:
    """Capture seconds per dtype (all layers, last position) and the ratio to the first dtype.

    The dtypes are timed interleaved (one call each per round, best of ``repeats`` rounds after a
    warm-up round), so load spikes on a shared machine hit every dtype alike.
    """
    from hub.models import load_model

    models = {dt: load_model(model, dtype=dt, device=device) for dt in dtypes}
    hm = models[dtypes[0]]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(10, min(hm.vocab_size, 30000), (batch, tokens), generator=g).tolist()
    best = {dt: float("inf") for dt in dtypes}
    for r in range(repeats + 1):
        for dt, m in models.items():
            t = best_of(lambda: m.capture(ids, layers="all", positions="last", batch_size=batch), 1, warmup=0)
            best[dt] = min(best[dt], t) if r else best[dt]  # round 0 = warm-up
    base = best[dtypes[0]]
    return [{"what": f"capture all layers, {dt}, {device}", "seconds": best[dt], "vs": dtypes[0],
             "ratio": base / best[dt], "note": f"{dtypes[0]} seconds / {dt} seconds"} for dt in dtypes]


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3_270m")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args(argv)
    rows = dtype_rows(args.model, args.batch, args.tokens, args.repeats, "cpu", tuple(args.dtypes.split(",")))
    print_table(f"capture speed by dtype: {args.model}, batch {args.batch} x {args.tokens}, CPU "
                f"({torch.get_num_threads()} threads)", rows)
    print(f"peak RSS {peak_rss_mb():.0f} MB")
    return rows


if __name__ == "__main__":
    main()
